//! `boxoffice admin …`: the admin API's cluster operations from the command line. It talks
//! to any API node (`--api`, `BOXOFFICE_API`) with an admin token from the environment
//! (`BOXOFFICE_ADMIN_TOKEN`), prints what changed, and follows a drain until the node is
//! removed. A problem answer is printed as such and the command fails.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How often a drain's progress is read.
pub const DRAIN_POLL_MS: u64 = 1_000;
/// Longest one admin request may take (a replica move off a leader takes seconds).
pub const ADMIN_REQUEST_TIMEOUT_MS: u64 = 180_000;

#[derive(Args)]
pub struct AdminArgs {
    /// An API node of the cluster.
    #[arg(long, env = "BOXOFFICE_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// A bearer token with the admin role.
    #[arg(long, env = "BOXOFFICE_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    command: AdminCmd,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Nodes (state, replicas, leaderships) and groups (voters, leader, lag, events).
    Cluster {
        /// Print the admin API's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Add or drain storage nodes.
    #[command(subcommand)]
    Nodes(NodesCmd),
    /// Add inventory groups, move a replica or a leadership.
    #[command(subcommand)]
    Groups(GroupsCmd),
}

#[derive(Subcommand)]
enum NodesCmd {
    /// Put a running node (started without --init) in the cluster.
    Add {
        #[arg(long)]
        id: u64,
        /// Where it listens, host:port.
        #[arg(long)]
        addr: String,
    },
    /// Move every leadership and replica off a node, then remove it; shows progress until
    /// it is removed.
    Drain {
        #[arg(long)]
        id: u64,
        /// Start the drain and return without following it.
        #[arg(long)]
        no_wait: bool,
        /// Give up following after this many seconds (the drain goes on).
        #[arg(long, default_value_t = 1_800)]
        timeout_secs: u64,
    },
}

#[derive(Subcommand)]
enum GroupsCmd {
    /// Create more inventory groups.
    Add {
        #[arg(long)]
        count: u64,
    },
    /// Move one replica of a group from a node to another.
    Move {
        #[arg(long)]
        group: u64,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
    },
    /// Move a group's leadership to one of its voters.
    Leader {
        #[arg(long)]
        group: u64,
        #[arg(long)]
        node: u64,
    },
}

struct Admin {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Admin {
    /// Sends one request; a 2xx answer's JSON, or the problem as an error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.api.trim_end_matches('/'));
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_millis(ADMIN_REQUEST_TIMEOUT_MS));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .with_context(|| format!("asking {url}"))?;
        let status = answer.status();
        let text = answer.text().await.context("reading the answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            bail!("{}", problem_line(status, &value));
        }
        Ok(value)
    }
}

/// A JSON string as its text (a `Value`'s `Display` would quote it); anything else as JSON.
fn text(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

/// A problem answer in one line: status, title, detail and the field it names.
fn problem_line(status: StatusCode, problem: &Value) -> String {
    let text = |key: &str| problem[key].as_str().unwrap_or_default().to_owned();
    let mut line = format!("{status}: {}", text("title"));
    if !text("detail").is_empty() {
        line.push_str(&format!(": {}", text("detail")));
    }
    if !text("field").is_empty() {
        line.push_str(&format!(" (field {})", text("field")));
    }
    if let Value::String(raw) = problem {
        line.push_str(raw);
    }
    line
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let admin = Admin {
        http: reqwest::Client::new(),
        api: args.api,
        token: args.token,
    };
    match args.command {
        AdminCmd::Cluster { json } => {
            let view = admin.call(Method::GET, "/admin/v1/cluster", None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", render_cluster(&view));
            }
        }
        AdminCmd::Nodes(NodesCmd::Add { id, addr }) => {
            let body = json!({"node_id": id, "addr": addr});
            let node = admin
                .call(Method::POST, "/admin/v1/nodes", Some(body))
                .await?;
            println!(
                "node {id} at {} is {}",
                text(&node["addr"]),
                text(&node["state"])
            );
        }
        AdminCmd::Nodes(NodesCmd::Drain {
            id,
            no_wait,
            timeout_secs,
        }) => {
            let path = format!("/admin/v1/nodes/{id}");
            let node = admin.call(Method::DELETE, &path, None).await?;
            println!("node {id} is {}", text(&node["state"]));
            if !no_wait && node["state"] != "removed" {
                follow_drain(&admin, id, Duration::from_secs(timeout_secs)).await?;
            }
        }
        AdminCmd::Groups(GroupsCmd::Add { count }) => {
            let body = json!({ "count": count });
            let created = admin
                .call(Method::POST, "/admin/v1/groups", Some(body))
                .await?;
            for g in created["groups"].as_array().into_iter().flatten() {
                println!("group {} on nodes {}", g["group_id"], g["voters"]);
            }
        }
        AdminCmd::Groups(GroupsCmd::Move { group, from, to }) => {
            let path = format!("/admin/v1/groups/{group}/move");
            let body = json!({"from": from, "to": to});
            let moved = admin.call(Method::POST, &path, Some(body)).await?;
            println!(
                "group {group}: replica moved from node {from} to node {to} in {} ms; voters {}{}",
                moved["took_ms"],
                moved["voters"],
                if moved["source_retired"] == true {
                    ""
                } else {
                    " (the source's replica is not retired yet)"
                }
            );
        }
        AdminCmd::Groups(GroupsCmd::Leader { group, node }) => {
            let path = format!("/admin/v1/groups/{group}/leader");
            let body = json!({ "node_id": node });
            let moved = admin.call(Method::POST, &path, Some(body)).await?;
            println!(
                "group {group}: leader {} (was {}) in {} ms",
                moved["leader"], moved["previous_leader"], moved["took_ms"]
            );
        }
    }
    Ok(())
}

/// Prints a line each time the draining node's state, replicas or leaderships change,
/// until it is removed.
async fn follow_drain(admin: &Admin, id: u64, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = None;
    loop {
        let view = admin.call(Method::GET, "/admin/v1/cluster", None).await?;
        let node = view["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["node_id"] == id)
            .cloned()
            .with_context(|| format!("node {id} is not in the cluster view"))?;
        let now = (
            node["state"].as_str().unwrap_or("?").to_owned(),
            node["replicas"].as_u64().unwrap_or(0),
            node["leaders"].as_u64().unwrap_or(0),
        );
        if last.as_ref() != Some(&now) {
            println!(
                "[{:>5.1} s] node {id}: {}, {} replicas, {} leaderships",
                started.elapsed().as_secs_f64(),
                now.0,
                now.1,
                now.2
            );
            last = Some(now.clone());
        }
        if now.0 == "removed" {
            println!("node {id} is removed; it can be stopped");
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!(
                "node {id} is still {} after {} s (the drain goes on)",
                now.0,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
    }
}

/// The cluster view as two tables (JSON values are rendered to text first: a `Value`'s
/// `Display` ignores widths).
fn render_cluster(view: &Value) -> String {
    let mut out = String::from("NODE  STATE     REACHABLE  REPLICAS  LEADERS  ADDR\n");
    for n in view["nodes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<5} {:<9} {:<10} {:<9} {:<8} {}\n",
            n["node_id"].to_string(),
            n["state"].as_str().unwrap_or("?"),
            n["reachable"].to_string(),
            n["replicas"].to_string(),
            n["leaders"].to_string(),
            n["addr"].as_str().unwrap_or("?")
        ));
    }
    out.push_str("\nGROUP  LEADER  TERM  APPLIED  EVENTS  VOTERS      LEARNERS  LAG\n");
    for g in view["groups"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<6} {:<7} {:<5} {:<8} {:<7} {:<11} {:<9} {}\n",
            g["group_id"].to_string(),
            g["leader"].to_string(),
            g["term"].to_string(),
            g["applied_index"].to_string(),
            g["events"].to_string(),
            g["voters"].to_string(),
            g["learners"].to_string(),
            g["lag"]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_renders_as_two_tables() {
        let view = json!({
            "nodes": [{"node_id": 1, "addr": "10.0.0.1:7000", "state": "draining", "reachable": true, "replicas": 2, "leaders": 1}],
            "groups": [{"group_id": 1, "voters": [1, 2, 3], "learners": [], "leader": 1, "term": 4, "applied_index": 90, "lag": {"1": 0, "2": 3}, "events": 7}]
        });
        let text = render_cluster(&view);
        assert_eq!(
            text,
            "NODE  STATE     REACHABLE  REPLICAS  LEADERS  ADDR\n\
             1     draining  true       2         1        10.0.0.1:7000\n\
             \n\
             GROUP  LEADER  TERM  APPLIED  EVENTS  VOTERS      LEARNERS  LAG\n\
             1      1       4     90       7       [1,2,3]     []        {\"1\":0,\"2\":3}\n"
        );
    }

    #[test]
    fn a_problem_reads_as_one_line() {
        let problem = json!({"title": "Unprocessable request", "detail": "no node 9 in the cluster", "field": "to"});
        assert_eq!(
            problem_line(StatusCode::UNPROCESSABLE_ENTITY, &problem),
            "422 Unprocessable Entity: Unprocessable request: no node 9 in the cluster (field to)"
        );
    }
}
