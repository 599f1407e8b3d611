//! Prometheus metrics of the public network, the API and (on full nodes) the follower, brought
//! up to date from their counters on every status tick.

use crate::metrics::Registry;
use bastion_api::ApiStats;
use bastion_gossip::{GossipStats, TopicStats};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Turns running totals into Prometheus counters (each tick adds what grew since the last).
#[derive(Debug)]
pub struct PublicTelemetry {
    reg: Arc<Registry>,
    prev: HashMap<String, u64>,
}

impl PublicTelemetry {
    /// Metrics in `reg`.
    pub fn new(reg: &Arc<Registry>) -> PublicTelemetry {
        PublicTelemetry { reg: reg.clone(), prev: HashMap::new() }
    }

    fn count(&mut self, name: &str, help: &str, labels: &[(&str, &str)], total: u64) {
        let key = format!("{name}{labels:?}");
        let c = self.reg.counter(name, help, labels);
        let prev = self.prev.entry(key).or_default();
        c.add(total.saturating_sub(*prev));
        *prev = total.max(*prev);
    }

    fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.reg.gauge(name, help, labels).set(v);
    }

    fn topic(&mut self, topic: &str, t: &TopicStats) {
        const HELP: &str = "Public network messages by topic and outcome";
        for (outcome, v) in [
            ("published", t.published),
            ("published_no_peers", t.published_no_peers),
            ("publish_failed", t.publish_failed),
            ("received", t.received),
            ("accepted", t.accepted),
            ("rejected", t.rejected),
            ("ignored", t.ignored),
            ("duplicate", t.duplicates),
            ("dropped_inbound", t.dropped_inbound),
            ("dropped_validate", t.dropped_validate),
        ] {
            self.count("bastion_public_messages_total", HELP, &[("topic", topic), ("outcome", outcome)], v);
        }
    }

    /// The public network's counters, what the node's checks refused, and the API's.
    pub fn update(
        &mut self,
        gossip: Option<&GossipStats>,
        refused: &BTreeMap<String, u64>,
        api: Option<&ApiStats>,
    ) {
        if let Some(g) = gossip {
            self.gauge("bastion_public_peers", "Peers connected on the public network", &[], g.peers as f64);
            self.topic("txs", &g.txs);
            self.topic("blocks", &g.blocks);
            const RANGES: &str = "Block range requests (backfill) by outcome";
            for (outcome, v) in [
                ("requested", g.ranges_requested),
                ("answered", g.ranges_answered),
                ("failed", g.ranges_failed),
                ("served", g.requests_served),
                ("unavailable", g.requests_unavailable),
                ("refused", g.requests_refused),
                ("timed_out", g.requests_timed_out),
            ] {
                self.count("bastion_public_ranges_total", RANGES, &[("outcome", outcome)], v);
            }
            for (reason, v) in &g.penalties {
                self.count(
                    "bastion_public_penalties_total",
                    "Peers penalized (disconnected and banned) by reason",
                    &[("reason", reason)],
                    *v,
                );
            }
        }
        for (reason, v) in refused {
            self.count(
                "bastion_public_refused_total",
                "Transactions and blocks from the public network or the API refused by this node's checks, by reason",
                &[("reason", reason)],
                *v,
            );
        }
        if let Some(a) = api {
            const REQ: &str = "API requests answered, by status class";
            for (class, v) in [
                ("2xx", a.requests.success),
                ("3xx", a.requests.redirect),
                ("4xx", a.requests.client_error),
                ("5xx", a.requests.server_error),
            ] {
                self.count("bastion_api_requests_total", REQ, &[("class", class)], v);
            }
            self.count("bastion_api_ws_messages_total", "WebSocket messages sent", &[], a.ws_messages);
            self.count(
                "bastion_api_ws_closed_slow_total",
                "WebSocket clients closed for falling behind",
                &[],
                a.ws_closed_slow,
            );
            self.count(
                "bastion_api_updates_dropped_total",
                "Blocks the API could not index in time",
                &[],
                a.updates_dropped,
            );
            self.gauge(
                "bastion_api_ws_connections",
                "Open WebSocket connections",
                &[],
                a.ws_connections as f64,
            );
            self.gauge(
                "bastion_api_ws_queued_bytes",
                "Bytes queued to WebSocket clients",
                &[],
                a.ws_queued_bytes as f64,
            );
            self.gauge(
                "bastion_api_behind",
                "1 while the API has skipped blocks it could not index",
                &[],
                f64::from(u8::from(a.behind)),
            );
        }
    }

    /// A full node's follower: height, lag, executed and backfilled blocks.
    /// State sync in progress or done (`bastion_statesync_*`), and this node's snapshot
    /// serving (from the network's counters and the server's).
    pub fn update_sync(
        &mut self,
        sync: Option<&crate::state_sync::SyncStatus>,
        served: Option<&bastion_statesync::ServerStats>,
        gossip: Option<&GossipStats>,
    ) {
        if let Some(s) = sync {
            let phase = |p: &str| f64::from(u8::from(s.phase == p));
            for p in ["discovering", "downloading", "verifying", "done", "failed"] {
                self.gauge(
                    "bastion_statesync_phase",
                    "1 for the state sync's current phase",
                    &[("phase", p)],
                    phase(p),
                );
            }
            self.gauge(
                "bastion_statesync_target_height",
                "Height of the snapshot being synced (or synced from)",
                &[],
                s.target_height.or(s.synced_from_height).unwrap_or(0) as f64,
            );
            self.gauge(
                "bastion_statesync_chunks_done",
                "Snapshot chunks verified",
                &[],
                f64::from(s.chunks_done),
            );
            self.gauge(
                "bastion_statesync_chunks_total",
                "Chunks in the snapshot being synced",
                &[],
                f64::from(s.chunks_total),
            );
            self.gauge("bastion_statesync_bytes_done", "Snapshot bytes verified", &[], s.bytes_done as f64);
            self.gauge(
                "bastion_statesync_bytes_total",
                "Bytes in the snapshot being synced",
                &[],
                s.bytes_total as f64,
            );
            self.gauge(
                "bastion_statesync_peers",
                "Peers serving the snapshot being synced",
                &[],
                s.peers as f64,
            );
            self.gauge(
                "bastion_statesync_peers_refused",
                "Peers refused during this sync",
                &[],
                s.refused.len() as f64,
            );
            self.gauge(
                "bastion_statesync_eta_seconds",
                "Estimated seconds left in the download",
                &[],
                s.eta_s.unwrap_or(0.0),
            );
            self.count(
                "bastion_statesync_bytes_downloaded_total",
                "Bytes received in snapshot chunks",
                &[],
                s.bytes_downloaded,
            );
        }
        if let Some(v) = served {
            const SERVED: &str = "Snapshot requests this node answered, by outcome";
            for (outcome, n) in [
                ("manifest", v.manifests),
                ("chunk", v.chunks),
                ("busy", v.busy),
                ("unavailable", v.unavailable),
                ("malformed", v.malformed),
            ] {
                self.count("bastion_snapshot_requests_total", SERVED, &[("outcome", outcome)], n);
            }
            self.count(
                "bastion_snapshot_served_bytes_total",
                "Snapshot chunk bytes served to peers",
                &[],
                v.bytes,
            );
        }
        if let Some(g) = gossip {
            self.count(
                "bastion_snapshot_refused_busy_total",
                "Snapshot requests refused by the network for too many in flight from one peer",
                &[],
                g.snapshots.refused_busy,
            );
        }
    }

    pub fn update_full(&mut self, s: &crate::full::FullStatus) {
        self.gauge("bastion_height", "Highest finalized and durable height", &[], s.height as f64);
        self.gauge(
            "bastion_full_seen_height",
            "Highest certified height this full node has seen",
            &[],
            s.seen_height as f64,
        );
        self.gauge(
            "bastion_full_lag_blocks",
            "Certified blocks seen but not executed yet",
            &[],
            s.lag_blocks as f64,
        );
        self.gauge(
            "bastion_halted",
            "1 once the node has halted",
            &[],
            f64::from(u8::from(s.halted.is_some())),
        );
        self.count("bastion_full_executed_total", "Blocks this full node executed", &[], s.executed);
        self.count(
            "bastion_full_backfilled_total",
            "Blocks that arrived by range requests",
            &[],
            s.backfilled,
        );
        self.count(
            "bastion_full_bad_ranges_total",
            "Range answers refused (the peer was penalized)",
            &[],
            s.bad_ranges,
        );
    }
}
