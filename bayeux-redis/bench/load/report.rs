//! The report: each round's table with its notes (Redis commands by name, missing deliveries by
//! process, client errors), then the summary over rounds and the ratios taken within each round.

use bench_support::procs::spread;

use crate::measure::Row;
use crate::Conf;

fn cmds_per(row: &Row) -> f64 {
    row.redis_cmds.values().sum::<u64>() as f64 / row.distinct.max(1) as f64
}

pub fn print_round(round: usize, rows: &[Row]) {
    println!("\n### Round {round}\n");
    println!(
        "| configuration | subscribed | published (acked) | delivered | missing | duplicated \
         | delivered msgs/s | p50 ms | p99 ms | server CPU s | redis CPU s | bench CPU s \
         | Redis cmds per delivery | setup/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {}{} | {} ({}{}) | {} of {}{} | {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
            r.conf.name(),
            r.subscribed,
            if r.setup_failed > 0 { format!(" ({} failed)", r.setup_failed) } else { String::new() },
            r.published,
            r.acked,
            if r.refused > 0 { format!(", {} refused", r.refused) } else { String::new() },
            r.distinct,
            r.expected,
            if r.complete { "" } else { " (deadline)" },
            r.missing,
            r.duplicated,
            r.delivered_per_s,
            r.p50_ms,
            r.p99_ms,
            r.server_cpu_s,
            r.redis_cpu_s,
            r.bench_cpu_s,
            if r.conf.redis() { format!("{:.2}", cmds_per(r)) } else { "-".into() },
            r.setup_per_s,
        );
    }
    println!();
    for r in rows {
        if r.conf.redis() {
            let by_name: Vec<String> = r
                .redis_cmds
                .iter()
                .map(|(name, calls)| {
                    format!("{name} {:.2}", *calls as f64 / r.distinct.max(1) as f64)
                })
                .collect();
            println!(
                "- {}: Redis commands per delivery: {}",
                r.conf.name(),
                by_name.join(", ")
            );
        }
        if r.missing > 0 {
            let by: Vec<String> = r
                .missing_by_process
                .iter()
                .enumerate()
                .map(|(p, n)| format!("process {}: {n}", p + 1))
                .collect();
            println!(
                "- {}: {} deliveries missing at {} subscribers ({})",
                r.conf.name(),
                r.missing,
                r.subscribers_missing,
                by.join(", ")
            );
        }
        if r.errors > 0 {
            println!("- {}: {} client errors", r.conf.name(), r.errors);
        }
        for note in &r.notes {
            println!("- {}: {note}", r.conf.name());
        }
    }
}

pub fn print_summary(rows: &[Row], confs: &[Conf]) {
    let pick = |conf: Conf| -> Vec<&Row> { rows.iter().filter(|r| r.conf == conf).collect() };
    let fig = |rs: &[&Row], f: fn(&Row) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<_>>();
    println!("\n### Summary: median [min–max] over rounds\n");
    println!(
        "| configuration | delivered msgs/s | missing (sum over rounds) | duplicated (sum) | p50 ms | p99 ms \
         | server CPU s | redis CPU s | delivered per server+redis CPU s | Redis cmds per delivery |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &conf in confs {
        let rs = pick(conf);
        println!(
            "| {} | {} | {} of {} | {} | {} | {} | {} | {} | {} | {} |",
            conf.name(),
            spread(&fig(&rs, |r| r.delivered_per_s), 0),
            rs.iter().map(|r| r.missing).sum::<u64>(),
            rs.iter().map(|r| r.expected).sum::<u64>(),
            rs.iter().map(|r| r.duplicated).sum::<u64>(),
            spread(&fig(&rs, |r| r.p50_ms), 1),
            spread(&fig(&rs, |r| r.p99_ms), 1),
            spread(&fig(&rs, |r| r.server_cpu_s), 2),
            spread(&fig(&rs, |r| r.redis_cpu_s), 2),
            spread(
                &fig(&rs, |r| r.distinct as f64
                    / (r.server_cpu_s + r.redis_cpu_s).max(0.01)),
                0
            ),
            if conf.redis() {
                spread(&fig(&rs, cmds_per), 2)
            } else {
                "-".into()
            },
        );
    }
    // Ratios are taken within each round (the configurations ran side by side), then summarised.
    let ratio = |a: Conf, b: Conf, f: fn(&Row) -> f64| -> Option<String> {
        let (xs, ys) = (pick(a), pick(b));
        if xs.is_empty() || ys.is_empty() {
            return None;
        }
        let v: Vec<f64> = xs.iter().zip(&ys).map(|(x, y)| f(x) / f(y)).collect();
        Some(spread(&v, 2))
    };
    println!("\n### Ratios within each round: median [min–max]\n");
    println!("| ratio | delivered msgs/s | delivered per server+redis CPU s |");
    println!("|---|---|---|");
    let per_cpu = |r: &Row| r.distinct as f64 / (r.server_cpu_s + r.redis_cpu_s).max(0.01);
    for (label, a, b) in [
        ("ours-3 / ours-1", Conf::Ours3, Conf::Ours1),
        ("ours-1 / faye-redis-1", Conf::Ours1, Conf::Faye1),
        ("ours-3 / faye-redis-3", Conf::Ours3, Conf::Faye3),
        ("faye-redis-3 / faye-redis-1", Conf::Faye3, Conf::Faye1),
        ("ours-1 (Redis) / ours memory", Conf::Ours1, Conf::Memory),
    ] {
        if let (Some(rate), Some(cpu)) = (ratio(a, b, |r| r.delivered_per_s), ratio(a, b, per_cpu))
        {
            println!("| {label} | {rate} | {cpu} |");
        }
    }
}
