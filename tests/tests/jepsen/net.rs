//! The test network: one network namespace per process, each with a veth pair onto one
//! bridge in the root namespace, addresses from 198.18.0.0/15 (RFC 2544, benchmarking), and
//! the faults the nemesis applies to it (blackhole routes, `tc netem`). [`Net`] removes
//! every namespace, link and qdisc it made when dropped, pass or fail, and [`Net::create`]
//! first removes what a crashed earlier run left behind (found by name prefix).

use std::collections::BTreeSet;
use std::process::Command;

/// Every name this harness creates starts with this (namespaces, links, the bridge).
pub const PREFIX: &str = "bxj";
/// The bridge in the root namespace; the harness's own address sits on it.
const BRIDGE: &str = "bxjbr0";
/// The /24 every address comes from (inside 198.18.0.0/15).
const SUBNET: &str = "198.18.7";
/// The test process's address on the bridge (clients and the nemesis's status reads).
const HOST_ADDR: &str = "198.18.7.1";
/// The metric of the root namespace's `unreachable` route for [`SUBNET`]: above the
/// bridge's connected route (metric 0), so it only answers when the bridge is gone.
const GUARD_METRIC: &str = "4000";
/// Held (an exclusive file lock) by the one run that owns the names above. Two runs at once
/// share the bridge and namespace names: the second one's [`clean_leftovers`] deleted the
/// first one's bridge, the first one's clients then reached the machine's default gateway
/// (which answers any HTTP request with a bare 404) and then the second run's API nodes.
const RUN_LOCK: &str = "/tmp/boxoffice-jepsen.lock";

/// Runs `ip`/`tc`-style commands; `Err` with stderr when the command fails.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `args` (`ip …`, `tc …`) inside namespace `ns`.
fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

fn must(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        panic!("{e}");
    }
}

/// One namespace: its name, its address, and the root-side veth.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub addr: String,
    veth: String,
}

/// The namespaces of one run and the faults currently applied to them.
pub struct Net {
    pub hosts: Vec<Host>,
    /// The run lock ([`RUN_LOCK`]), released when the file closes after the teardown.
    _lock: std::fs::File,
    /// (namespace, destination address) with a blackhole route in place.
    blackholes: BTreeSet<(String, String)>,
    /// Namespaces with a netem qdisc on their `eth0`.
    netems: BTreeSet<String>,
}

impl Net {
    /// The harness's own address (where the clients' traffic comes from).
    pub fn host_addr() -> &'static str {
        HOST_ADDR
    }

    /// Whether this machine can run the harness: root, `ip` and `tc`.
    pub fn available() -> Result<(), String> {
        run("ip", &["-V"])?;
        run("tc", &["-V"])?;
        let uid = run("id", &["-u"])?;
        if uid.trim() != "0" {
            return Err(format!("needs root (uid is {})", uid.trim()));
        }
        Ok(())
    }

    /// Creates a namespace per name (`n1`, `a1`, …) on one bridge; addresses `.11`, `.12`, …
    /// Waits for any other run on this machine to finish first.
    pub fn create(names: &[&str]) -> Net {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(RUN_LOCK)
            .unwrap_or_else(|e| panic!("{RUN_LOCK}: {e}"));
        if lock.try_lock().is_err() {
            println!("another Jepsen run holds {RUN_LOCK}; waiting for it to finish");
            lock.lock()
                .unwrap_or_else(|e| panic!("locking {RUN_LOCK}: {e}"));
        }
        clean_leftovers();
        // Nothing this run sends may leave for another address: should the bridge vanish,
        // the subnet is unreachable rather than routed to the default gateway.
        if let Err(e) = guard_route("add") {
            panic!("{e}");
        }
        must("ip", &["link", "add", BRIDGE, "type", "bridge"]);
        let mut net = Net {
            _lock: lock,
            hosts: Vec::new(),
            blackholes: BTreeSet::new(),
            netems: BTreeSet::new(),
        };
        must(
            "ip",
            &["addr", "add", &format!("{HOST_ADDR}/24"), "dev", BRIDGE],
        );
        must("ip", &["link", "set", BRIDGE, "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{PREFIX}-{name}");
            let veth = format!("{PREFIX}v{name}");
            let addr = format!("{SUBNET}.{}", 11 + i);
            // Record first, so a failure half way is still cleaned up by Drop.
            net.hosts.push(Host {
                name: (*name).to_owned(),
                ns: ns.clone(),
                addr: addr.clone(),
                veth: veth.clone(),
            });
            must("ip", &["netns", "add", &ns]);
            must(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            );
            must("ip", &["link", "set", &veth, "master", BRIDGE]);
            must("ip", &["link", "set", &veth, "up"]);
            for args in [
                vec!["ip", "link", "set", "lo", "up"],
                vec!["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"],
                vec!["ip", "link", "set", "eth0", "up"],
            ] {
                if let Err(e) = in_ns(&ns, &args) {
                    panic!("{e}");
                }
            }
        }
        net
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Drops every packet between the two sides (both directions): blackhole routes in
    /// each namespace towards every address on the other side.
    pub fn cut(&mut self, side_a: &[&str], side_b: &[&str]) {
        for a in side_a {
            for b in side_b {
                self.blackhole(a, b);
                self.blackhole(b, a);
            }
        }
    }

    fn blackhole(&mut self, from: &str, to: &str) {
        let ns = self.host(from).ns.clone();
        let dest = format!("{}/32", self.host(to).addr);
        if self.blackholes.insert((ns.clone(), dest.clone())) {
            if let Err(e) = in_ns(&ns, &["ip", "route", "add", "blackhole", &dest]) {
                panic!("{e}");
            }
        }
    }

    /// Degrades the host's outgoing link: `tc netem` with `delay_ms` ± `jitter_ms` and
    /// `loss_pct` % loss where the kernel has netem; where it has not (this CI's kernel has
    /// no `sch_netem` and no tc classifiers or actions), a token bucket (`tbf`) of
    /// `rate_kbit` whose queue holds at most `delay_ms` of traffic: a slow link that delays
    /// and, under load, drops. Returns which one it applied.
    pub fn degrade(
        &mut self,
        name: &str,
        delay_ms: u64,
        jitter_ms: u64,
        loss_pct: u64,
        rate_kbit: u64,
    ) -> String {
        let ns = self.host(name).ns.clone();
        let (delay, jitter, loss) = (
            format!("{delay_ms}ms"),
            format!("{jitter_ms}ms"),
            format!("{loss_pct}%"),
        );
        let netem = in_ns(
            &ns,
            &[
                "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay, &jitter,
                "loss", &loss,
            ],
        );
        self.netems.insert(ns.clone());
        if netem.is_ok() {
            return format!("netem delay {delay_ms}±{jitter_ms} ms loss {loss_pct} %");
        }
        let rate = format!("{rate_kbit}kbit");
        let tbf = [
            "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", "4kb",
            "latency", &delay,
        ];
        if let Err(e) = in_ns(&ns, &tbf) {
            panic!("{e}");
        }
        format!("tbf {rate_kbit} kbit/s, queue ≤ {delay_ms} ms (no netem in this kernel)")
    }

    /// Removes every blackhole route and netem qdisc.
    pub fn heal(&mut self) {
        for (ns, dest) in std::mem::take(&mut self.blackholes) {
            let _ = in_ns(&ns, &["ip", "route", "del", "blackhole", &dest]);
        }
        for ns in std::mem::take(&mut self.netems) {
            let _ = in_ns(&ns, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.heal();
        for host in &self.hosts {
            kill_namespace_processes(&host.ns);
            let _ = run("ip", &["link", "del", &host.veth]);
            let _ = run("ip", &["netns", "del", &host.ns]);
        }
        let _ = run("ip", &["link", "del", BRIDGE]);
        let _ = guard_route("del");
    }
}

/// Runs `ip route add|del unreachable 198.18.7.0/24 metric …` in the root namespace.
fn guard_route(verb: &str) -> Result<String, String> {
    let subnet = format!("{SUBNET}.0/24");
    run(
        "ip",
        &[
            "route",
            verb,
            "unreachable",
            &subnet,
            "metric",
            GUARD_METRIC,
        ],
    )
}

/// SIGCONT then SIGKILL every process inside `ns` (only ours live there).
fn kill_namespace_processes(ns: &str) {
    let Ok(pids) = run("ip", &["netns", "pids", ns]) else {
        return;
    };
    for pid in pids.split_whitespace() {
        let _ = run("kill", &["-CONT", pid]);
        let _ = run("kill", &["-KILL", pid]);
    }
}

/// Removes namespaces, links and the guard route a crashed earlier run of this harness left
/// behind (only called with the run lock held, so no live run owns them).
pub fn clean_leftovers() {
    let _ = guard_route("del");
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for line in list.lines() {
            let ns = line.split_whitespace().next().unwrap_or_default();
            if ns.starts_with(&format!("{PREFIX}-")) {
                kill_namespace_processes(ns);
                let _ = run("ip", &["netns", "del", ns]);
            }
        }
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for line in links.lines() {
            // "7: bxjvn1@if2: <...>"
            let name = line
                .split(':')
                .nth(1)
                .map(|s| s.trim().split('@').next().unwrap_or_default().to_owned())
                .unwrap_or_default();
            if name.starts_with(PREFIX) {
                let _ = run("ip", &["link", "del", &name]);
            }
        }
    }
}
