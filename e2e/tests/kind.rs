//! The whole product on the Kubernetes cluster KUBECONFIG points to (kind for
//! users; see the README's quickstart): install the chart, create a
//! 3-replica ReplicatedChat, chat through `kubectl chat` (kube mode), scale to
//! 5, delete the leader pod, scale to 3, a direct StatefulSet scale refused,
//! promote, a rolling restart under writes, a backup, a scheduled backup, the
//! web console, delete the resource, a new cluster restored from that backup
//! — each step asserted on the cluster's real state. Prints how long failover
//! took.
//!
//! Images come from CHAT_NODE_IMAGE and CHAT_OPERATOR_IMAGE (default
//! `chat-node:dev`, `chat-operator:dev`, as `kind load` puts them); helm from
//! HELM or PATH. Without a reachable cluster: `skipped: no cluster`.

use std::collections::BTreeSet;
use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use chat_e2e::{KubectlChat, eventually_every};
use chat_k8s::names::{ROLE_LABEL, ROLE_LEADER};
use chat_k8s::{ClusterNames, ReplicatedChat};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const RELEASE: &str = "rchat-e2e";
const OPERATOR_NAMESPACE: &str = "rchat-e2e-system";
const CLUSTER: &str = "demo";
/// The cluster made from demo's backup, and the claim that holds it.
const RESTORED: &str = "restored";
const BACKUP_CLAIM: &str = "chat-backups";

/// Polls `check` every second until it yields, or fails the test after `within`.
async fn wait_for<T, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(what, within, Duration::from_secs(1), check).await
}

async fn reachable_cluster() -> Option<Client> {
    let client = Client::try_default().await.ok()?;
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(_)) => Some(client),
        _ => None,
    }
}

fn image(var: &str, default: &str) -> (String, String) {
    let image = std::env::var(var).unwrap_or_else(|_| default.into());
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.into(), tag.into()),
        _ => (image, "latest".into()),
    }
}

fn helm(args: &[&str]) {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let out = Command::new(&helm).args(args).output().unwrap_or_else(|e| panic!("running {helm}: {e}"));
    assert!(out.status.success(), "helm {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The voters and ready count the ReplicatedChat's status reports, once Available.
async fn available(rchats: &Api<ReplicatedChat>) -> Option<(usize, i32)> {
    let c = rchats.get(CLUSTER).await.ok()?;
    let status = c.status?;
    let available = status.conditions.iter().any(|c| c.type_ == "Available" && c.status == "True");
    let voters = status.members.iter().filter(|m| m.role == "voter").count();
    available.then_some((voters, status.ready_replicas))
}

/// Pods carrying the leader label.
async fn labelled(pods: &Api<Pod>) -> Vec<Pod> {
    let selector = format!("{},{ROLE_LABEL}={ROLE_LEADER}", ClusterNames::new(CLUSTER, "").selector_string());
    pods.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default()
}

/// Pod IPs behind the client Service.
async fn service_endpoints(slices: &Api<EndpointSlice>) -> BTreeSet<String> {
    let selector = format!("kubernetes.io/service-name={CLUSTER}");
    let slices = slices.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default();
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect()
}

async fn scale(rchats: &Api<ReplicatedChat>, replicas: i32) {
    let patch = json!({"spec": {"replicas": replicas}});
    rchats.patch_scale(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("scale subresource");
}

/// Removes what the suite created, pass or fail.
struct Cleanup {
    client: Client,
    namespace: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (client, ns) = (self.client.clone(), self.namespace.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let _ = Api::<Namespace>::all(client).delete(&ns, &DeleteParams::default()).await;
            });
        })
        .join();
        if std::env::var_os("E2E_KEEP_OPERATOR").is_none() {
            let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
            let _ = Command::new(helm).args(["uninstall", RELEASE, "-n", OPERATOR_NAMESPACE]).output();
        }
    }
}

#[tokio::test]
async fn the_whole_product_on_kubernetes() {
    let Some(client) = reachable_cluster().await else {
        eprintln!("skipped: no cluster (KUBECONFIG points to no reachable API server)");
        return;
    };
    let (node_repo, node_tag) = image("CHAT_NODE_IMAGE", "chat-node:dev");
    let (op_repo, op_tag) = image("CHAT_OPERATOR_IMAGE", "chat-operator:dev");
    let node_image = format!("{node_repo}:{node_tag}");
    let namespace = format!("rchat-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let _cleanup = Cleanup { client: client.clone(), namespace: namespace.clone() };

    // 1. Install the chart (CRD, operator, RBAC) and wait for the operator.
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/replicated-chat");
    helm(&[
        "upgrade",
        "--install",
        RELEASE,
        chart,
        "-n",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
        &format!("image.repository={op_repo}"),
        "--set",
        &format!("image.tag={op_tag}"),
        "--set",
        "image.pullPolicy=IfNotPresent",
        "--wait",
        "--timeout",
        "5m",
    ]);
    let ns = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(namespace.clone()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();

    // 2. A 3-replica ReplicatedChat becomes Available with three voters.
    let rchats: Api<ReplicatedChat> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let object: ReplicatedChat = serde_json::from_value(json!({
        "apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChat",
        "metadata": {"name": CLUSTER},
        "spec": {"replicas": 3, "image": node_image, "imagePullPolicy": "IfNotPresent",
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
    }))
    .unwrap();
    rchats.create(&PostParams::default(), &object).await.unwrap();
    wait_for("3 voters, 3 ready, Available", Duration::from_secs(300), || async {
        available(&rchats).await.filter(|&(voters, ready)| voters == 3 && ready == 3)
    })
    .await;

    // 3. Chat through kube mode (port-forward through the API server).
    // Shared with the writer thread of the rolling restart (step 9).
    let chat = std::sync::Arc::new(KubectlChat::new(&["-n", &namespace, "--cluster", CLUSTER, "--timeout", "20"]));
    chat.ok(&["register", "alice"]).unwrap();
    chat.ok(&["register", "bob"]).unwrap();
    chat.ok(&["login", "alice"]).unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let body = format!("before failover {i}");
        chat.ok(&["send", "bob", &body]).unwrap();
        acknowledged.push(body);
    }
    let read = chat.json(&["read", "bob", "--limit", "100"]).unwrap();
    assert_eq!(read.as_array().unwrap().len(), 10);

    // 4. Scale to 5: five voters.
    scale(&rchats, 5).await;
    wait_for("5 voters", Duration::from_secs(300), || async {
        available(&rchats).await.filter(|&(voters, ready)| voters == 5 && ready == 5)
    })
    .await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    assert_eq!(sts.get(CLUSTER).await.unwrap().spec.unwrap().replicas, Some(5));

    // 5. Delete the leader pod: the label and the client Service follow the new
    //    leader, writes resume, nothing acknowledged is lost, the pod returns.
    let leader = wait_for("exactly one labelled leader", Duration::from_secs(30), || async {
        let l = labelled(&pods).await;
        (l.len() == 1).then(|| l[0].clone())
    })
    .await;
    let old_uid = leader.uid();
    pods.delete(&leader.name_any(), &DeleteParams::default()).await.unwrap();
    let deleted_at = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let body = format!("after failover {attempt}");
        if chat.ok(&["--timeout", "5", "send", "bob", &body]).is_ok() {
            acknowledged.push(body);
            break;
        }
        assert!(
            deleted_at.elapsed() < Duration::from_secs(120),
            "no write accepted within 120 s of the leader's deletion"
        );
    }
    let failover = deleted_at.elapsed();
    eprintln!("failover: leader pod {} deleted → first acknowledged write after {failover:.2?}", leader.name_any());
    // The label moves with the election (the operator's fast path or the
    // node itself), and the Service's ready endpoints follow the label at
    // once: readiness does not drop a voter for a short election.
    let every = Duration::from_millis(100);
    let new_leader = eventually_every("the label on a new leader", Duration::from_secs(60), every, || async {
        let l = labelled(&pods).await;
        (l.len() == 1 && l[0].uid() != old_uid).then(|| l[0].clone())
    })
    .await;
    let labelled_at = Instant::now();
    let ip = new_leader.status.clone().and_then(|s| s.pod_ip).expect("leader has an IP");
    let only_the_new_leader = "the client Service selecting only the new leader";
    eventually_every(only_the_new_leader, Duration::from_secs(30), every, || async {
        (service_endpoints(&slices).await == BTreeSet::from([ip.clone()])).then_some(())
    })
    .await;
    let routed = labelled_at.elapsed();
    let routed_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    // The election, by the new leader's own clock (kind's nodes share this host's).
    let status = chat.json(&["status"]).unwrap();
    let leader_since = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == status["leader_id"])
        .and_then(|m| m["leader_since_ms"].as_u64())
        .expect("the leader says when it was elected");
    let election_to_endpoints =
        Duration::from_millis(u64::try_from(routed_at_ms).unwrap().saturating_sub(leader_since));
    eprintln!(
        "failover: label on {} {:.2?} after the deletion; ready endpoints {routed:.2?} after the label, \
         {election_to_endpoints:.2?} after the election (±100 ms polling)",
        new_leader.name_any(),
        labelled_at.duration_since(deleted_at)
    );
    assert!(routed < Duration::from_secs(3), "the Service took {routed:?} to follow the label (bound: 3 s)");
    assert!(
        election_to_endpoints < Duration::from_secs(3),
        "the Service took {election_to_endpoints:?} from the election to its new leader (bound: 3 s)"
    );
    let read = chat.json(&["read", "bob", "--limit", "100"]).unwrap();
    let bodies: Vec<String> =
        read.as_array().unwrap().iter().filter_map(|m| m["body"].as_str().map(String::from)).collect();
    assert_eq!(bodies, acknowledged, "every acknowledged message, once, in order");
    wait_for("the deleted pod back as a member, 5 voters ready", Duration::from_secs(300), || async {
        available(&rchats).await.filter(|&(voters, ready)| voters == 5 && ready == 5)
    })
    .await;

    // 6. Scale to 3: three voters, the StatefulSet shrunk, removed volumes deleted (onScaleDown: Delete).
    scale(&rchats, 3).await;
    wait_for("3 voters", Duration::from_secs(300), || async {
        available(&rchats).await.filter(|&(voters, _)| voters == 3)
    })
    .await;
    wait_for("StatefulSet at 3", Duration::from_secs(120), || async {
        (sts.get(CLUSTER).await.ok()?.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let names = ClusterNames::new(CLUSTER, &namespace);
    wait_for("removed members' volumes deleted", Duration::from_secs(180), || async {
        let left = pvcs.list(&ListParams::default()).await.ok()?.items;
        let gone = [3, 4].iter().all(|&o| !left.iter().any(|p| p.name_any() == names.pvc(o)));
        gone.then_some(())
    })
    .await;

    // 7. Day two. A direct `kubectl scale statefulset` is refused at admission,
    //    naming the command to use (the chart's ValidatingAdmissionPolicy).
    let refused = sts
        .patch_scale(CLUSTER, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .expect_err("scaling the operator's StatefulSet directly was admitted");
    assert!(refused.to_string().contains(&format!("kubectl scale rchat {CLUSTER}")), "{refused}");

    // 8. Promote a follower: it leads, and the label follows.
    let leading = wait_for("one labelled leader", Duration::from_secs(30), || async {
        let l = labelled(&pods).await;
        (l.len() == 1).then(|| l[0].name_any())
    })
    .await;
    let chosen = (0..3).map(|o| names.pod(o)).find(|p| *p != leading).unwrap();
    chat.ok(&["promote", &chosen]).unwrap();
    wait_for("the promoted pod labelled", Duration::from_secs(60), || async {
        let l = labelled(&pods).await;
        (l.len() == 1 && l[0].name_any() == chosen).then_some(())
    })
    .await;

    // 9. A rolling restart (a template change, as an upgrade) under a steady
    //    write load: followers first, one hand-over, the old leader last; no
    //    write fails, every one is there, the term moves by exactly one.
    let term_before = rchats.get(CLUSTER).await.unwrap().status.unwrap().term;
    let writer = {
        let chat = chat.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let (mut sent, mut failed) = (Vec::new(), Vec::new());
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = format!("during the restart {i}");
                    match chat.ok(&["send", "bob", &body]) {
                        Ok(_) => sent.push(body),
                        Err(e) => failed.push(format!("{body}: {e}")),
                    }
                    i += 1;
                }
                (sent, failed)
            }
        });
        (stop, handle)
    };
    chat.ok(&["restart"]).unwrap();
    wait_for("every pod restarted with the new template, Progressing=False", Duration::from_secs(600), || async {
        let set = sts.get(CLUSTER).await.ok()?;
        let target = set.status?.update_revision?;
        let all = pods.list(&ListParams::default().labels(&names.selector_string())).await.ok()?.items;
        let current = all.len() == 3 && all.iter().all(|p| p.labels().get("controller-revision-hash") == Some(&target));
        let rchat = rchats.get(CLUSTER).await.ok()?;
        let steady = rchat.status?.conditions.iter().any(|c| c.type_ == "Progressing" && c.status == "False");
        (current && steady).then_some(())
    })
    .await;
    writer.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = writer.1.join().unwrap();
    assert!(failed.is_empty(), "writes failed during the rolling restart: {failed:?}");
    let term_after = rchats.get(CLUSTER).await.unwrap().status.unwrap().term;
    assert_eq!(term_after, term_before + 1, "one leadership change for the whole restart");
    let read = chat.json(&["read", "bob", "--limit", "1000"]).unwrap();
    let bodies: Vec<String> =
        read.as_array().unwrap().iter().filter_map(|m| m["body"].as_str().map(String::from)).collect();
    for body in &sent {
        assert!(bodies.contains(body), "{body} acknowledged during the restart, then lost");
    }
    eprintln!("rolling restart: {} writes during it, none failed; term {term_before} → {term_after}", sent.len());

    // 10. A backup through a tunnel to a follower's peer port, as an admin.
    let backup = std::env::temp_dir().join(format!("{namespace}.backup"));
    let taken = chat.json(&["backup", backup.to_str().unwrap()]).unwrap();
    assert!(taken["bytes"].as_u64().unwrap() > 0, "{taken}");
    std::fs::remove_file(&backup).unwrap();

    // 11. Scheduled backups to a claim: a CronJob (every minute here) whose
    //    run writes a backup; its log names the file. Then the section goes
    //    (the CronJob is suspended).
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": BACKUP_CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &claim).await.unwrap();
    let schedule = json!({"spec": {"backup": {"schedule": "* * * * *", "claimName": BACKUP_CLAIM, "keep": 2}}});
    rchats.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&schedule)).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let job = wait_for("a scheduled backup that succeeded", Duration::from_secs(240), || async {
        let done = jobs.list(&ListParams::default()).await.ok()?.items;
        done.into_iter().find(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0).map(|j| j.name_any())
    })
    .await;
    let run = pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await.unwrap().items;
    let log = pods.logs(&run[0].name_any(), &LogParams::default()).await.unwrap();
    let file = log
        .split("written to /backups/")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no backup file named in the job's log: {log}"))
        .to_string();
    let unschedule = json!({"spec": {"backup": null}});
    rchats.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&unschedule)).await.unwrap();

    // 11b. The web console: a Deployment from the node image that becomes
    //      ready (its HTTPS probe answers, so its certificate was issued and
    //      loaded) and shows the cluster; turned off, scaled to zero.
    let console = json!({"spec": {"console": {"enabled": true}}});
    rchats.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&console)).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let console_names = ClusterNames::new(CLUSTER, &namespace);
    let console_name = console_names.console();
    wait_for("the console ready", Duration::from_secs(120), || async {
        let d = deployments.get(&console_name).await.ok()?;
        (d.status?.ready_replicas? == 1).then_some(())
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let console_tls = secrets.get(&console_names.console_tls_secret()).await.expect("the console's certificate");
    assert!(console_tls.data.is_some_and(|d| d.contains_key("tls.crt") && d.contains_key("tls.key")));
    let off = json!({"spec": {"console": {"enabled": false}}});
    rchats.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&off)).await.unwrap();
    wait_for("the console scaled to zero", Duration::from_secs(60), || async {
        let d = deployments.get(&console_name).await.ok()?;
        (d.spec?.replicas? == 0).then_some(())
    })
    .await;

    // 12. Delete the resource: everything it owned goes.
    rchats.delete(CLUSTER, &DeleteParams::default()).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    wait_for("owned objects garbage-collected", Duration::from_secs(180), || async {
        let none = rchats.get_opt(CLUSTER).await.ok()?.is_none()
            && sts.get_opt(CLUSTER).await.ok()?.is_none()
            && services.list(&ListParams::default()).await.ok()?.items.is_empty()
            && pdbs.get_opt(CLUSTER).await.ok()?.is_none()
            && pvcs.list(&ListParams::default()).await.ok()?.items.iter().all(|p| p.name_any() == BACKUP_CLAIM);
        none.then_some(())
    })
    .await;

    // 13. A new cluster from that backup: pod 0 restores it, the others join;
    //    alice logs in with her old password and finds her messages.
    let restored: ReplicatedChat = serde_json::from_value(json!({
        "apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChat",
        "metadata": {"name": RESTORED},
        "spec": {"replicas": 3, "image": node_image, "imagePullPolicy": "IfNotPresent",
                 "bootstrap": {"fromBackup": {"claimName": BACKUP_CLAIM, "path": file}}},
    }))
    .unwrap();
    rchats.create(&PostParams::default(), &restored).await.unwrap();
    wait_for("the restored cluster: 3 voters, Available", Duration::from_secs(300), || async {
        let rchat = rchats.get(RESTORED).await.ok()?;
        let status = rchat.status?;
        let available = status.conditions.iter().any(|c| c.type_ == "Available" && c.status == "True");
        (available && status.replicas == 3).then_some(())
    })
    .await;
    let again = KubectlChat::new(&["-n", &namespace, "--cluster", RESTORED, "--timeout", "20"]);
    again.ok(&["login", "alice"]).unwrap();
    let read = again.json(&["read", "bob", "--limit", "1000"]).unwrap();
    let bodies: Vec<&str> = read.as_array().unwrap().iter().filter_map(|m| m["body"].as_str()).collect();
    assert!(bodies.contains(&"before failover 0"), "the restored cluster lost messages: {bodies:?}");
    again.ok(&["send", "bob", "after the restore"]).unwrap();
    rchats.delete(RESTORED, &DeleteParams::default()).await.unwrap();
    eprintln!("e2e passed; failover took {failover:.2?}");
}
