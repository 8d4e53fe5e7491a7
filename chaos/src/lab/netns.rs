//! The lab on separate network stacks (`failover-lab --netns`): every region in a Linux
//! network namespace of its own with its own address, the coordinators, agents and beacon
//! simulators of a region started inside it and bound to that address only, and the regions
//! joined by a bridge in the lab's own namespace (where the lab's tools run, at the bridge's
//! address).
//!
//! ```text
//!   fl<id>eu (10.77.<n>.1)   fl<id>us (10.77.<n>.2)   fl<id>ap (10.77.<n>.3)
//!          │ veth                    │ veth                    │ veth
//!   ───────┴──────── bridge fl<id>br (10.77.<n>.254, the lab's tools) ──┴───────
//! ```
//!
//! WAN latency between regions ([`WAN_RTT_MS`]) is `tc netem` on each namespace's interface,
//! one band per other region, when the kernel has `sch_netem`; where it has not, the lab
//! says so and delays the links with its own per-link proxies ([`crate::netem`]) on the
//! bridge address instead.
//!
//! Invariants: every namespace, interface and bridge this module made is removed when the
//! [`Regions`] value is dropped (a lab killed with SIGKILL cannot: `ip netns list` shows what
//! it left, `fl<id>…`, and `ip netns del` removes it);
//! nothing is created under a name that exists already; where the machine does not allow
//! namespaces, [`Regions::create`] fails with the command that was refused and its message,
//! before anything else starts.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Round-trip times between the lab's regions (ms): eu–us 80, us–ap 150, eu–ap 200.
pub const WAN_RTT_MS: [(&str, &str, u64); 3] =
    [("eu", "us", 80), ("us", "ap", 150), ("eu", "ap", 200)];

/// The round trip between regions `a` and `b` in [`WAN_RTT_MS`] (0 within a region or for a
/// pair it does not list).
pub fn wan_rtt_ms(a: &str, b: &str) -> u64 {
    WAN_RTT_MS
        .iter()
        .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
        .map_or(0, |(_, _, ms)| *ms)
}

/// How WAN latency is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyBy {
    /// `tc netem` on the namespaces' interfaces.
    TcNetem,
    /// The lab's per-link TCP proxies (the kernel has no `sch_netem`).
    Proxies,
}

/// One region's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Region name (`eu`).
    pub name: String,
    /// Namespace name (`fl<id>eu`).
    pub netns: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The interface on the bridge side (in the lab's namespace).
    host_if: String,
    /// The interface inside the namespace.
    ns_if: String,
}

/// The namespaces of a running lab.
#[derive(Debug)]
pub struct Regions {
    /// Prefix of every name (`fl<id>`).
    prefix: String,
    bridge: String,
    /// The bridge's address: where the lab's tools and proxies are reached from the regions.
    pub host_ip: Ipv4Addr,
    /// The regions, in the order given.
    pub regions: Vec<Region>,
}

/// Runs `ip`/`tc` with `args`; errors carry the command line and what it printed.
fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program} (iproute2)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

impl Regions {
    /// Creates one namespace per region (at most 250), joined by a bridge, with the subnet
    /// `10.77.<id % 250>.0/24`; `id` keeps the names of concurrent labs apart.
    ///
    /// Errors: namespaces are not allowed here (the refused command and its message are
    /// named), or a name is taken. What was created is removed again.
    pub fn create(region_names: &[String], id: u32) -> Result<Self> {
        anyhow::ensure!(
            !region_names.is_empty() && region_names.len() <= 250,
            "between 1 and 250 regions"
        );
        let prefix = format!("fl{}", id % 10_000);
        let subnet = (id % 250) as u8;
        let mut me = Regions {
            bridge: format!("{prefix}br"),
            prefix,
            host_ip: Ipv4Addr::new(10, 77, subnet, 254),
            regions: Vec::new(),
        };
        if let Err(e) = me.build(region_names, subnet) {
            me.destroy();
            return Err(e.context(
                "this machine does not allow the lab's network namespaces (root with iproute2 \
                 and CAP_NET_ADMIN is needed); run failover-lab without --netns",
            ));
        }
        Ok(me)
    }

    fn build(&mut self, region_names: &[String], subnet: u8) -> Result<()> {
        run("ip", &["link", "add", &self.bridge, "type", "bridge"])?;
        let cidr = format!("{}/24", self.host_ip);
        run("ip", &["addr", "add", &cidr, "dev", &self.bridge])?;
        run("ip", &["link", "set", &self.bridge, "up"])?;
        for (i, name) in region_names.iter().enumerate() {
            let r = Region {
                name: name.clone(),
                netns: format!("{}{name}", self.prefix),
                ip: Ipv4Addr::new(10, 77, subnet, i as u8 + 1),
                host_if: format!("{}{name}0", self.prefix),
                ns_if: format!("{}{name}1", self.prefix),
            };
            run("ip", &["netns", "add", &r.netns])?;
            self.regions.push(r.clone());
            run(
                "ip",
                &[
                    "link", "add", &r.host_if, "type", "veth", "peer", "name", &r.ns_if,
                ],
            )?;
            run("ip", &["link", "set", &r.ns_if, "netns", &r.netns])?;
            run(
                "ip",
                &["link", "set", &r.host_if, "master", &self.bridge, "up"],
            )?;
            let cidr = format!("{}/24", r.ip);
            in_ns(&r.netns, "ip", &["addr", "add", &cidr, "dev", &r.ns_if])?;
            in_ns(&r.netns, "ip", &["link", "set", &r.ns_if, "up"])?;
            in_ns(&r.netns, "ip", &["link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The region named `name`.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The command that runs `program args` inside `region`'s namespace
    /// (`ip netns exec NS program args`), as a program and its arguments.
    ///
    /// Errors: no such region.
    pub fn command(
        &self,
        region: &str,
        program: &std::path::Path,
        args: &[String],
    ) -> Result<(std::path::PathBuf, Vec<String>)> {
        let r = self
            .region(region)
            .with_context(|| format!("no namespace for region {region}"))?;
        let mut all = vec![
            "netns".to_string(),
            "exec".to_string(),
            r.netns.clone(),
            program.display().to_string(),
        ];
        all.extend(args.iter().cloned());
        Ok(("ip".into(), all))
    }

    /// Adds WAN latency between every two regions ([`WAN_RTT_MS`], half of the round trip on
    /// each side's egress) with `tc netem`.
    ///
    /// Errors: the kernel has no `sch_netem` (the caller then uses its proxies), or `tc`
    /// failed; the message names the command.
    pub fn add_wan_latency(&self) -> Result<()> {
        for r in &self.regions {
            let others: Vec<&Region> = self.regions.iter().filter(|o| o.name != r.name).collect();
            // Bands 1..=n for the other regions, the last band (no delay) for everything else.
            let bands = (others.len() + 1).to_string();
            let default = others.len().to_string();
            let mut prio = vec![
                "qdisc", "add", "dev", &r.ns_if, "root", "handle", "1:", "prio",
            ];
            prio.extend(["bands", &bands, "priomap"]);
            prio.extend(std::iter::repeat_n(default.as_str(), 16));
            in_ns(&r.netns, "tc", &prio)?;
            for (k, o) in others.iter().enumerate() {
                let band = format!("1:{}", k + 1);
                let handle = format!("{}:", 10 + k);
                let delay = format!("{}ms", wan_rtt_ms(&r.name, &o.name) / 2);
                in_ns(
                    &r.netns,
                    "tc",
                    &[
                        "qdisc", "add", "dev", &r.ns_if, "parent", &band, "handle", &handle,
                        "netem", "delay", &delay,
                    ],
                )?;
                let dst = format!("{}/32", o.ip);
                in_ns(
                    &r.netns,
                    "tc",
                    &[
                        "filter", "add", "dev", &r.ns_if, "parent", "1:", "protocol", "ip", "prio",
                        "1", "u32", "match", "ip", "dst", &dst, "flowid", &band,
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Cuts `region` off (its interface on the bridge goes down: nothing reaches it or leaves
    /// it, the lab's tools included), or brings it back.
    ///
    /// Errors: no such region, or `ip` failed.
    pub fn set_connected(&self, region: &str, connected: bool) -> Result<()> {
        let r = self
            .region(region)
            .with_context(|| format!("no namespace for region {region}"))?;
        let state = if connected { "up" } else { "down" };
        run("ip", &["link", "set", &r.host_if, state])
    }

    /// Removes every namespace and the bridge (best effort; errors are ignored, as on a
    /// partly built set).
    pub fn destroy(&mut self) {
        for r in self.regions.drain(..) {
            let _ = run("ip", &["netns", "del", &r.netns]);
            let _ = run("ip", &["link", "del", &r.host_if]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        self.destroy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wan_table_is_symmetric_and_zero_inside_a_region() {
        assert_eq!(wan_rtt_ms("eu", "us"), 80);
        assert_eq!(wan_rtt_ms("us", "eu"), 80);
        assert_eq!(wan_rtt_ms("ap", "us"), 150);
        assert_eq!(wan_rtt_ms("eu", "ap"), 200);
        assert_eq!(wan_rtt_ms("eu", "eu"), 0);
    }
}
