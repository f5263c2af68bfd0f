//! dejima overview

use argh::FromArgs;

use super::{human, print_json, Out};
use crate::api::Overview;
use crate::client::Client;

/// server-wide totals and substrate health
#[derive(FromArgs)]
#[argh(subcommand, name = "overview")]
pub struct OverviewCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

pub fn overview(c: &Client, a: OverviewCmd) -> Out {
    let o: Overview = c.get_json("/v1/overview")?;
    if a.json {
        print_json(&o);
        return Ok(());
    }
    println!(
        "islands    {} ({} running, {} hibernated, {} errored)",
        o.total_islands, o.running, o.hibernated, o.errored
    );
    println!("clients    {}", o.attached_clients);
    println!(
        "memory     {} used / {} capped",
        human(o.memory_usage_bytes),
        human(o.memory_limit_bytes)
    );
    println!("cpu        {:.1}%", o.cpu_percent);
    println!(
        "docker     {}",
        if o.docker_reachable {
            "reachable"
        } else {
            "UNREACHABLE"
        }
    );
    println!(
        "image      {} ({})",
        o.island_image,
        if o.island_image_present {
            "present"
        } else {
            "MISSING: run `dejima image build`"
        }
    );
    if let Some(h) = o.host_memory_bytes {
        println!("host mem   {}", human(h));
    }
    println!("since      {}", o.daemon_started_at);
    Ok(())
}
