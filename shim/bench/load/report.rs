//! The report: each round's table and probe lines, then the summary over rounds (medians and spreads),
//! the ratios taken within each round, and the statistics they use.

use bench_support::procs::{median, spread};

use std::collections::BTreeMap;

use crate::measure::{Probe, Row};
use crate::{Kind, Mode};

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn per(cmds: &BTreeMap<String, u64>, n: usize) -> f64 {
    cmds.values().sum::<u64>() as f64 / n as f64
}

fn breakdown(cmds: &BTreeMap<String, u64>, n: usize) -> String {
    cmds.iter()
        .map(|(name, calls)| format!("{name} {:.2}", *calls as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn print_round(round: usize, rows: &[Row]) {
    println!("\n### Round {round}\n");
    println!(
        "| server | channel | clients | subscribes/s | p50 ms | p99 ms | failed | server CPU s | redis CPU s \
         | bench CPU s | diffs received | Redis cmds per join | unsubscribes/s | Redis cmds per leave |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.0} | {:.2} |",
            r.kind.name(),
            r.mode.label(),
            r.clients,
            r.subs_per_s,
            r.p50_ms,
            r.p99_ms,
            r.failed,
            r.server_cpu_s,
            r.redis_cpu_s,
            r.bench_cpu_s,
            r.diffs,
            per(&r.join_cmds, r.clients),
            r.unsubs_per_s,
            per(&r.leave_cmds, r.clients)
        );
    }
    for r in rows.iter().filter(|r| r.mode != Mode::Plain) {
        println!(
            "\n{} on {} at {} clients, Redis commands per join: {}; per leave: {}",
            r.kind.name(),
            r.mode.label(),
            r.clients,
            breakdown(&r.join_cmds, r.clients),
            breakdown(&r.leave_cmds, r.clients)
        );
        for (k, p) in r.probes.iter().enumerate() {
            println!(
                "- probe {k}: reply {:.1} ms (roster of {}), join diff at all {} members {:.1} ms (median member {:.1} ms, reached {}), leave diff at all {:.1} ms (reached {})",
                p.reply_ms, p.roster, r.clients, p.join_all_ms, p.join_p50_ms, p.joined_seen, p.leave_all_ms, p.left_seen
            );
        }
    }
    for r in rows.iter().filter(|r| r.mode == Mode::Plain) {
        let ms: Vec<String> = r
            .probes
            .iter()
            .map(|p| format!("{:.1}", p.join_all_ms))
            .collect();
        println!(
            "\n{} at {} clients, one publish on the plain channel at all subscribers (ms): {}",
            r.kind.name(),
            r.clients,
            ms.join(", ")
        );
    }
}

pub fn print_summary(rows: &[Row], sizes: &[usize]) {
    let pick = |kind: Kind, mode: Mode, n: usize| -> Vec<&Row> {
        rows.iter()
            .filter(|r| r.kind == kind && r.mode == mode && r.clients == n)
            .collect()
    };
    let fig = |rs: &[&Row], f: fn(&Row) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<_>>();
    println!("\n### Summary: median [min–max] over rounds\n");
    println!("| server | channel | clients | subscribes/s | p50 ms | p99 ms | server+redis CPU s | Redis cmds per join | Redis cmds per leave |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        for mode in [Mode::Presence, Mode::Solo, Mode::Plain] {
            for kind in [Kind::Ours, Kind::Theirs] {
                let rs = pick(kind, mode, n);
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    mode.label(),
                    n,
                    spread(&fig(&rs, |r| r.subs_per_s), 0),
                    spread(&fig(&rs, |r| r.p50_ms), 1),
                    spread(&fig(&rs, |r| r.p99_ms), 1),
                    spread(&fig(&rs, |r| r.server_cpu_s + r.redis_cpu_s), 2),
                    spread(&fig(&rs, |r| per(&r.join_cmds, r.clients)), 2),
                    spread(&fig(&rs, |r| per(&r.leave_cmds, r.clients)), 2),
                );
            }
        }
    }
    // Ratios are taken within each round (the two servers ran side by side), then summarised.
    let ratio = |n: usize, f: &dyn Fn(&Row, &Row) -> f64, a: (Kind, Mode), b: (Kind, Mode)| {
        let (xs, ys) = (pick(a.0, a.1, n), pick(b.0, b.1, n));
        let v: Vec<f64> = xs.iter().zip(&ys).map(|(x, y)| f(x, y)).collect();
        spread(&v, 2)
    };
    let ours_p = (Kind::Ours, Mode::Presence);
    let theirs_p = (Kind::Theirs, Mode::Presence);
    let ours_plain = (Kind::Ours, Mode::Plain);
    let theirs_plain = (Kind::Theirs, Mode::Plain);
    let ours_solo = (Kind::Ours, Mode::Solo);
    let theirs_solo = (Kind::Theirs, Mode::Solo);
    let subs = |x: &Row, y: &Row| x.subs_per_s / y.subs_per_s;
    let p50 = |x: &Row, y: &Row| x.p50_ms / y.p50_ms;
    let p99 = |x: &Row, y: &Row| x.p99_ms / y.p99_ms;
    println!("\n### Ratios within each round: median [min–max]\n");
    println!("Ours against theirs (target: presence subscribes/s ≥ 5x):\n");
    println!("| clients | channels | subscribes/s ours / theirs | p50 latency theirs / ours | p99 theirs / ours |");
    println!("|---|---|---|---|---|");
    for &n in sizes {
        for (label, ours, theirs) in [
            (Mode::Presence.label(), ours_p, theirs_p),
            (Mode::Solo.label(), ours_solo, theirs_solo),
            (Mode::Plain.label(), ours_plain, theirs_plain),
        ] {
            println!(
                "| {n} | {label} | {} | {} | {} |",
                ratio(n, &subs, ours, theirs),
                ratio(n, &|x, y| p50(y, x), ours, theirs),
                ratio(n, &|x, y| p99(y, x), ours, theirs),
            );
        }
    }
    println!("\nPresence against plain subscribes on the same server (target on ours: p50 latency ≤ 1.5x):\n");
    println!("| clients | server | presence channels | p50 presence / plain | p99 presence / plain | subscribes/s presence / plain |");
    println!("|---|---|---|---|---|---|");
    for &n in sizes {
        for (kind, plain) in [(Kind::Ours, ours_plain), (Kind::Theirs, theirs_plain)] {
            for mode in [Mode::Presence, Mode::Solo] {
                let pres = (kind, mode);
                println!(
                    "| {n} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    mode.label(),
                    ratio(n, &p50, pres, plain),
                    ratio(n, &p99, pres, plain),
                    ratio(n, &subs, pres, plain),
                );
            }
        }
    }
    println!(
        "\n### Join and leave diffs reaching every member: median [min–max] over all probes\n"
    );
    println!("| server | members | probe subscribe reply ms | join diff at all members ms | join diff at median member ms | leave diff at all members ms | control: one publish on the plain channel at all subscribers ms |");
    println!("|---|---|---|---|---|---|---|");
    for &n in sizes {
        for kind in [Kind::Ours, Kind::Theirs] {
            let probes_of = |mode: Mode| -> Vec<&Probe> {
                pick(kind, mode, n)
                    .into_iter()
                    .flat_map(|r| &r.probes)
                    .collect()
            };
            let (ps, control) = (probes_of(Mode::Presence), probes_of(Mode::Plain));
            let f = |ps: &[&Probe], g: fn(&Probe) -> f64| {
                spread(&ps.iter().map(|p| g(p)).collect::<Vec<_>>(), 1)
            };
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} |",
                kind.name(),
                f(&ps, |p| p.reply_ms),
                f(&ps, |p| p.join_all_ms),
                f(&ps, |p| p.join_p50_ms),
                f(&ps, |p| p.leave_all_ms),
                f(&control, |p| p.join_all_ms)
            );
        }
    }
    // After the table, so it stays one table.
    println!();
    for &n in sizes {
        let all = |kind: Kind| {
            median(
                &pick(kind, Mode::Presence, n)
                    .into_iter()
                    .flat_map(|r| r.probes.iter().map(|p| p.join_all_ms))
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "join diff at all {n} members, theirs / ours (medians): {:.2}",
            all(Kind::Theirs) / all(Kind::Ours)
        );
    }
}
