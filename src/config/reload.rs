//! What a SIGHUP reload may change, and what it refuses (as nats-server's `reload.go` does).
//!
//! Cold: runs once per reload.

use crate::config::ServerOptions;

/// The outcome of comparing the running options with the reloaded ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// `key = value` lines for the options that changed and will be applied.
    pub applied: Vec<String>,
    /// Keys that changed but cannot change while running; any refuses the whole reload.
    pub refused: Vec<String>,
}

/// Compares `old` and `new`. The listening address, log file and shard count are fixed for the
/// life of the process; everything else applies to new connections at once, and `max_pending`,
/// `ping_*`, `write_deadline`, `debug` and `trace` to live ones too.
pub fn reloadable_changes(old: &ServerOptions, new: &ServerOptions) -> Changes {
    let mut changes = Changes::default();
    let mut refuse = |changed: bool, key: &str| {
        if changed {
            changes.refused.push(key.to_string());
        }
    };
    refuse(old.host != new.host, "host");
    refuse(old.port != new.port, "port");
    refuse(old.logfile != new.logfile, "logfile");
    refuse(old.shards != new.shards, "shards");
    // The monitoring listener is bound once at start (nats-server refuses these too).
    refuse(old.http_port != new.http_port, "http_port");
    refuse(old.https_port != new.https_port, "https_port");
    refuse(old.http_host != new.http_host, "http_host");
    refuse(old.http_base_path != new.http_base_path, "http_base_path");
    refuse(old.server_name != new.server_name, "server_name");
    let mut apply = |changed: bool, line: String| {
        if changed {
            changes.applied.push(line);
        }
    };
    apply(
        old.max_payload != new.max_payload,
        format!("max_payload = {}", new.max_payload),
    );
    apply(
        old.max_pending != new.max_pending,
        format!("max_pending = {}", new.max_pending),
    );
    apply(
        old.max_control_line != new.max_control_line,
        format!("max_control_line = {}", new.max_control_line),
    );
    apply(
        old.max_connections != new.max_connections,
        format!("max_connections = {}", new.max_connections),
    );
    apply(
        old.max_subscriptions != new.max_subscriptions,
        format!("max_subscriptions = {}", new.max_subscriptions),
    );
    apply(
        old.ping_interval != new.ping_interval,
        format!("ping_interval = {:?}", new.ping_interval),
    );
    apply(
        old.ping_max != new.ping_max,
        format!("ping_max = {}", new.ping_max),
    );
    apply(
        old.write_deadline != new.write_deadline,
        format!("write_deadline = {:?}", new.write_deadline),
    );
    apply(old.debug != new.debug, format!("debug = {}", new.debug));
    apply(old.trace != new.trace, format!("trace = {}", new.trace));
    apply(
        old.logtime != new.logtime,
        format!("logtime = {}", new.logtime),
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_reload_and_the_address_does_not() {
        let old = ServerOptions::default();
        let mut new = old.clone();
        new.max_payload = 2048;
        new.debug = !old.debug;
        let changes = reloadable_changes(&old, &new);
        assert_eq!(
            changes.applied,
            vec![
                "max_payload = 2048".to_string(),
                format!("debug = {}", new.debug)
            ]
        );
        assert!(changes.refused.is_empty());
        new.port = old.port + 1;
        let changes = reloadable_changes(&old, &new);
        assert_eq!(changes.refused, vec!["port".to_string()]);
    }

    #[test]
    fn no_change_is_no_change() {
        let old = ServerOptions::default();
        assert_eq!(reloadable_changes(&old, &old.clone()), Changes::default());
    }
}
