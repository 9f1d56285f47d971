//! `kubectl chat status` in kube mode: the members table, then the
//! cluster's conditions, volumes and recent Events ([`chat_k8s::view`]).

use chat_k8s::view::KubeView;

/// The three sections under the members table.
pub fn table(view: &KubeView) -> String {
    let mut out = String::from("\nCONDITIONS\n");
    for c in &view.conditions {
        out.push_str(&format!("  {:<12} {:<6} {:<22} {}\n", c.type_, c.status, c.reason, c.message));
    }
    out.push_str("\nVOLUMES\n");
    for v in &view.volumes {
        out.push_str(&format!("  {:<32} {:<8} {:>8} {}\n", v.claim, v.phase, v.capacity, v.storage_class));
    }
    out.push_str("\nRECENT EVENTS\n");
    for e in &view.events {
        out.push_str(&format!("  {} {:<8} {:<20} {:<16} {}\n", e.time, e.type_, e.reason, e.object, e.note));
    }
    for e in &view.errors {
        out.push_str(&format!("\n(not shown: {e})"));
    }
    out
}
