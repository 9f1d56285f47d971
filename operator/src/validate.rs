//! Judging a spec before acting on it. Errors stop the reconcile short of
//! touching the pods (Degraded condition + Warning Event naming the field);
//! warnings are reported the same way but the cluster is still reconciled.

use chat_k8s::ReplicatedChatSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// JSON path of the field, e.g. `spec.storage.size`.
    pub field: &'static str,
    pub message: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything wrong with `spec`, errors first.
/// The most read replicas a cluster may have: each one is another stream of
/// the log from the leader.
pub const MAX_READ_REPLICAS: i32 = 32;

pub fn validate(spec: &ReplicatedChatSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut error = |field, message: String| out.push(Finding { field, message, severity: Severity::Error });
    if spec.image.trim().is_empty() {
        error("spec.image", "must name the chat-node image".into());
    }
    if let Some(image) = spec.console.as_ref().and_then(|c| c.image.as_deref())
        && image.trim().is_empty()
    {
        error("spec.console.image", "must name an image with chat-console, or be left out (spec.image)".into());
    }
    if spec.replicas < 1 {
        error("spec.replicas", format!("must be at least 1, got {}", spec.replicas));
    }
    if !(0..=MAX_READ_REPLICAS).contains(&spec.read_replicas) {
        error("spec.readReplicas", format!("must be 0..={MAX_READ_REPLICAS}, got {}", spec.read_replicas));
    }
    if let Err(e) = check_quantity(&spec.storage.size) {
        error("spec.storage.size", e);
    }
    if let Some(resources) = &spec.resources {
        for (name, q) in resources.requests.iter().flatten().chain(resources.limits.iter().flatten()) {
            if let Err(e) = check_quantity(q) {
                error("spec.resources", format!("{name}: {e}"));
            }
        }
    }
    let raft = &spec.raft;
    if raft.election_timeout_min_ms < raft.heartbeat_ms.saturating_mul(3) {
        error(
            "spec.raft.electionTimeoutMinMs",
            format!(
                "must be at least 3 heartbeats ({} ms), got {} ms: followers would call elections between heartbeats",
                raft.heartbeat_ms.saturating_mul(3),
                raft.election_timeout_min_ms
            ),
        );
    }
    if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
        error(
            "spec.raft.electionTimeoutMaxMs",
            format!(
                "must be above electionTimeoutMinMs ({} ms), got {} ms",
                raft.election_timeout_min_ms, raft.election_timeout_max_ms
            ),
        );
    }
    match (&spec.tls.node_secret, &spec.tls.operator_secret) {
        (Some(_), None) => error(
            "spec.tls.operatorSecret",
            "is required with nodeSecret: the operator needs a certificate of the same CA to reach the nodes".into(),
        ),
        (None, Some(_)) => error(
            "spec.tls.nodeSecret",
            "is required with operatorSecret: bring both certificates, or neither and the operator issues them".into(),
        ),
        (Some(node), Some(op)) => {
            for (field, name) in [("spec.tls.nodeSecret", node), ("spec.tls.operatorSecret", op)] {
                if !is_dns_label(name) && !is_dns_subdomain(name) {
                    error(field, format!("{name:?} is not a valid Secret name"));
                }
            }
        }
        (None, None) => {}
    }
    if let Some(backup) = spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()) {
        if !is_dns_subdomain(&backup.claim_name) {
            error("spec.bootstrap.fromBackup.claimName", format!("{:?} is not a valid claim name", backup.claim_name));
        }
        if let Err(why) = relative_path(&backup.path) {
            error("spec.bootstrap.fromBackup.path", format!("{:?} {why}", backup.path));
        }
    }
    if let Some(backup) = &spec.backup {
        if let Err(why) = cron_schedule(&backup.schedule) {
            error("spec.backup.schedule", format!("{:?} {why}", backup.schedule));
        }
        if !is_dns_subdomain(&backup.claim_name) {
            error("spec.backup.claimName", format!("{:?} is not a valid claim name", backup.claim_name));
        }
        let what = "admin certificate (make one with common name chat-admin from your CA)";
        if let Err(e) = certificate_secret(backup.admin_secret.as_deref(), spec, what) {
            error("spec.backup.adminSecret", e);
        }
    }
    if let Some(console) = spec.console.as_ref().filter(|c| c.enabled) {
        let what = "console certificate (make one from your CA for the Service <name>-console)";
        if let Err(e) = certificate_secret(console.tls_secret.as_deref(), spec, what) {
            error("spec.console.tlsSecret", e);
        }
    }
    let exposed = !matches!(spec.service.type_, chat_k8s::crd::ServiceType::ClusterIP);
    if exposed && spec.network_policy.enabled && spec.network_policy.clients_from.is_empty() {
        out.push(Finding {
            field: "spec.networkPolicy.clientsFrom",
            message: format!(
                "is empty, so only pods of the namespace reach the public port, not the clients the {} \
                 Service exposes it to: list their IP blocks",
                spec.service.type_.as_str()
            ),
            severity: Severity::Warning,
        });
    }
    if spec.replicas > 1 && spec.replicas % 2 == 0 {
        out.push(Finding {
            field: "spec.replicas",
            message: format!(
                "{} is even: it tolerates no more failures than {} and needs a larger quorum",
                spec.replicas,
                spec.replicas - 1
            ),
            severity: Severity::Warning,
        });
    }
    out
}

/// A CronJob schedule: five fields, or one of cron's `@` macros. The API
/// server judges the fields themselves; this catches the shape early, with
/// the field's name.
fn cron_schedule(schedule: &str) -> Result<(), &'static str> {
    const MACROS: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
    if MACROS.contains(&schedule.trim()) {
        return Ok(());
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err("must be 5 cron fields (minute hour day-of-month month day-of-week) or @daily, @hourly, …");
    }
    if !fields.iter().all(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || "*/,-?".contains(c))) {
        return Err("holds characters no cron field has");
    }
    Ok(())
}

/// A path inside a mounted volume: relative, no `..`, no empty or odd parts.
fn relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > 1024 {
        return Err("must be a path of 1 to 1024 characters inside the claim");
    }
    if path.starts_with('/') {
        return Err("must be relative to the claim's root");
    }
    if path.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err("must not hold empty, `.` or `..` parts");
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("must not hold control characters");
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Secret's name: lower-case DNS labels joined by dots, 253 characters at most.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A Kubernetes resource quantity: a decimal number with an optional suffix
/// (binary Ki…Ei, decimal m, k…E, or an exponent).
fn check_quantity(q: &Quantity) -> Result<(), String> {
    let s = q.0.trim();
    let bad = || format!("{s:?} is not a quantity (e.g. 1Gi, 500Mi, 250m, 2)");
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let digits = number.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits.matches('.').count() > 1 || !digits.chars().any(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if number.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let known = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"];
    let exponent = suffix.strip_prefix(['e', 'E']).is_some_and(|e| {
        let e = e.trim_start_matches(['+', '-']);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    if known.contains(&suffix) || exponent { Ok(()) } else { Err(bad()) }
}

/// A field naming a certificate Secret the operator would otherwise issue:
/// a valid name, and required when `spec.tls` brings the certificates (the
/// operator then holds no CA to issue `what` from).
fn certificate_secret(name: Option<&str>, spec: &ReplicatedChatSpec, what: &str) -> Result<(), String> {
    match name {
        Some(name) if !is_dns_subdomain(name) => Err(format!("{name:?} is not a valid Secret name")),
        None if spec.tls.node_secret.is_some() => {
            Err(format!("is required with spec.tls: for certificates you bring the operator issues no {what}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ReplicatedChatSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_default_spec_is_clean() {
        assert_eq!(validate(&spec(serde_json::json!({"image": "chat-node:1"}))), vec![]);
    }

    #[test]
    fn each_rule_names_its_field() {
        let s = spec(serde_json::json!({
            "image": " ", "replicas": 4, "readReplicas": 33, "storage": {"size": "lots"},
            "raft": {"heartbeatMs": 100, "electionTimeoutMinMs": 200, "electionTimeoutMaxMs": 200},
            "resources": {"limits": {"memory": "1Gb"}}
        }));
        let found: Vec<(&str, Severity)> = validate(&s).iter().map(|f| (f.field, f.severity)).collect();
        assert_eq!(
            found,
            [
                ("spec.image", Severity::Error),
                ("spec.readReplicas", Severity::Error),
                ("spec.storage.size", Severity::Error),
                ("spec.resources", Severity::Error),
                ("spec.raft.electionTimeoutMinMs", Severity::Error),
                ("spec.raft.electionTimeoutMaxMs", Severity::Error),
                ("spec.replicas", Severity::Warning),
            ]
        );
    }

    #[test]
    fn a_backup_to_restore_names_a_claim_and_a_path_inside_it() {
        let fields = |backup| {
            let s = spec(serde_json::json!({"image": "chat-node:1", "bootstrap": {"fromBackup": backup}}));
            validate(&s).iter().map(|f| f.field).collect::<Vec<_>>()
        };
        assert!(fields(serde_json::json!({"claimName": "backups", "path": "chat/2026-12-02.backup"})).is_empty());
        assert_eq!(
            fields(serde_json::json!({"claimName": "Backups!", "path": "../etc/passwd"})),
            ["spec.bootstrap.fromBackup.claimName", "spec.bootstrap.fromBackup.path"]
        );
        for path in ["/abs", "a//b", "./a", ""] {
            assert_eq!(
                fields(serde_json::json!({"claimName": "b", "path": path})),
                ["spec.bootstrap.fromBackup.path"],
                "{path:?}"
            );
        }
    }

    #[test]
    fn a_console_with_brought_tls_needs_its_own_certificate() {
        let brought = serde_json::json!({"nodeSecret": "n", "operatorSecret": "o"});
        let fields = |extra: serde_json::Value| {
            let mut s = serde_json::json!({"image": "chat-node:1"});
            s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            validate(&spec(s)).iter().map(|f| f.field).collect::<Vec<_>>()
        };
        assert!(fields(serde_json::json!({"console": {"enabled": true}})).is_empty(), "the operator issues one");
        assert_eq!(
            fields(serde_json::json!({"tls": brought.clone(), "console": {"enabled": true}})),
            ["spec.console.tlsSecret"]
        );
        assert!(
            fields(serde_json::json!({"tls": brought.clone(), "console": {"enabled": true, "tlsSecret": "c"}}))
                .is_empty()
        );
        assert!(
            fields(serde_json::json!({"tls": brought.clone(), "console": {"enabled": false}})).is_empty(),
            "not running"
        );
        assert_eq!(
            fields(serde_json::json!({"console": {"enabled": true, "tlsSecret": "Not_A_Name"}})),
            ["spec.console.tlsSecret"]
        );
    }

    #[test]
    fn scheduled_backups_need_a_schedule_a_claim_and_with_brought_tls_an_admin_secret() {
        let fields = |extra: serde_json::Value| {
            let mut s = serde_json::json!({"image": "chat-node:1"});
            for (k, v) in extra.as_object().unwrap() {
                s[k] = v.clone();
            }
            validate(&spec(s)).iter().map(|f| f.field).collect::<Vec<_>>()
        };
        assert!(fields(serde_json::json!({"backup": {"schedule": "0 3 * * *", "claimName": "b"}})).is_empty());
        assert!(fields(serde_json::json!({"backup": {"schedule": "@daily", "claimName": "b"}})).is_empty());
        assert_eq!(
            fields(serde_json::json!({"backup": {"schedule": "every day", "claimName": "B!"}})),
            ["spec.backup.schedule", "spec.backup.claimName"]
        );
        assert_eq!(
            fields(serde_json::json!({"backup": {"schedule": "0 3 * * *; rm", "claimName": "b"}})),
            ["spec.backup.schedule"]
        );
        let brought = serde_json::json!({"nodeSecret": "n", "operatorSecret": "o"});
        assert_eq!(
            fields(serde_json::json!({"tls": brought, "backup": {"schedule": "@daily", "claimName": "b"}})),
            ["spec.backup.adminSecret"]
        );
        assert!(
            fields(serde_json::json!({"tls": brought,
                "backup": {"schedule": "@daily", "claimName": "b", "adminSecret": "mine-admin"}}))
            .is_empty()
        );
    }

    #[test]
    fn brought_certificates_come_in_pairs_with_valid_names() {
        let findings = |tls| validate(&spec(serde_json::json!({"image": "chat-node:1", "tls": tls})));
        let fields = |tls| findings(tls).iter().map(|f| f.field).collect::<Vec<_>>();
        assert_eq!(fields(serde_json::json!({"nodeSecret": "n"})), ["spec.tls.operatorSecret"]);
        assert_eq!(fields(serde_json::json!({"operatorSecret": "o"})), ["spec.tls.nodeSecret"]);
        assert_eq!(
            fields(serde_json::json!({"nodeSecret": "Bad_Name", "operatorSecret": "o"})),
            ["spec.tls.nodeSecret"]
        );
        assert!(findings(serde_json::json!({"nodeSecret": "chat-node-tls", "operatorSecret": "op.tls"})).is_empty());
    }

    #[test]
    fn an_exposed_service_behind_the_namespace_only_policy_is_warned_about() {
        let fields = |json| validate(&spec(json)).iter().map(|f| (f.field, f.severity)).collect::<Vec<_>>();
        let lb = serde_json::json!({"image": "i", "service": {"type": "LoadBalancer"}});
        assert_eq!(fields(lb), [("spec.networkPolicy.clientsFrom", Severity::Warning)]);
        let allowed = serde_json::json!({"image": "i", "service": {"type": "LoadBalancer"},
                                         "networkPolicy": {"clientsFrom": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}});
        assert_eq!(fields(allowed), []);
    }

    #[test]
    fn a_console_image_is_named_or_left_out() {
        let fields = |json| validate(&spec(json)).iter().map(|f| f.field).collect::<Vec<_>>();
        assert_eq!(
            fields(serde_json::json!({"image": "i", "console": {"enabled": true, "image": " "}})),
            ["spec.console.image"]
        );
        assert!(fields(serde_json::json!({"image": "i", "console": {"enabled": true}})).is_empty());
    }

    #[test]
    fn quantities() {
        for good in ["1Gi", "500Mi", "250m", "2", "1.5G", "1e3", "0.5"] {
            assert_eq!(check_quantity(&Quantity(good.into())), Ok(()), "{good}");
        }
        for bad in ["", "Gi", "1Gb", "lots", "1..2Gi", "-1Gi", "1e"] {
            assert!(check_quantity(&Quantity(bad.into())).is_err(), "{bad}");
        }
    }
}
