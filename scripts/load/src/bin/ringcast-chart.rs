//! `ringcast-chart`: draws the side-by-side comparison written by
//! `scripts/compare.sh` (`benches/results/compare.jsonl`) as a PNG:
//! deliveries/s, publish-to-receive p99 and server CPU per delivery against
//! subscriber count, ringcast beside nchan, for the one-topic scenarios.
//! Built only with `--features chart`.

use std::collections::BTreeMap;
use std::error::Error;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One panel: a figure per (server, subscribers).
struct Panel {
    title: &'static str,
    /// Where the figure is in a record (a JSON pointer into the report),
    /// and its key in records written before the report was grouped.
    key: (&'static str, &'static str),
    scale: f64,
}

/// A record's field: the grouped report's (`/delivery/per_s`), or the flat
/// key of a record written before the report was grouped (2026-12), as the
/// older `benches/results/**/compare.jsonl` are.
fn field<'a>(
    v: &'a serde_json::Value,
    (pointer, flat): (&str, &str),
) -> Option<&'a serde_json::Value> {
    v.pointer(pointer).or_else(|| v.get(flat))
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .unwrap_or_else(|| "benches/results/compare.jsonl".into());
    let output = args
        .next()
        .unwrap_or_else(|| "benches/results/compare.png".into());
    let font =
        std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (install fonts-dejavu-core)"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "font not usable")?;

    // server -> subscribers -> record, for the "aNk" scenarios (1 topic,
    // publish as fast as acknowledged, 1 worker).
    // Repeated runs are kept all and drawn as their median.
    let mut runs: BTreeMap<String, BTreeMap<u64, Vec<serde_json::Value>>> = BTreeMap::new();
    for line in std::fs::read_to_string(&input)?.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let scenario = v["scenario"].as_str().unwrap_or("");
        let one_topic_flat_out = scenario.starts_with('a') && !scenario.contains("workers");
        if !one_topic_flat_out {
            continue;
        }
        let server = field(&v, ("/run/server", "server")).and_then(|s| s.as_str());
        let subs = field(&v, ("/run/subscribers", "subscribers")).and_then(|s| s.as_u64());
        let (Some(server), Some(subs)) = (server, subs) else {
            continue;
        };
        // A run cut off by its time limit has no comparable rate or p99.
        let undelivered = (
            "/delivery/undelivered_at_deadline",
            "undelivered_at_deadline",
        );
        if field(&v, undelivered).and_then(|u| u.as_u64()).unwrap_or(0) > 0 {
            eprintln!("chart: leaving out {server} at {subs} subscribers (did not finish in time)");
            continue;
        }
        runs.entry(server.to_string())
            .or_default()
            .entry(subs)
            .or_default()
            .push(v);
    }
    if runs.is_empty() {
        return Err(format!("{input}: no one-topic (a*) scenarios to draw").into());
    }

    let panels = [
        Panel {
            title: "deliveries/s (thousands)",
            key: ("/delivery/per_s", "deliveries_per_s"),
            scale: 1e-3,
        },
        Panel {
            title: "publish-to-receive p99 (ms)",
            key: ("/latency_ms/p99", "latency_p99_ms"),
            scale: 1.0,
        },
        Panel {
            title: "server CPU per delivery (us)",
            key: (
                "/server/cpu_us_per_delivery",
                "server_cpu_s_per_million_deliveries",
            ),
            scale: 1.0,
        },
    ];
    let root = BitMapBackend::new(&output, (1500, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(40);
    top.draw_text(
        "ringcast vs nchan: 1 topic, publish as fast as acknowledged (16 in flight), server on 1 core \
         (runs that did not finish in time are left out)",
        &("sans-serif", 20).into_font().color(&BLACK),
        (20, 10),
    )?;
    // ringcast blue, nchan orange, anything else (the plain-writev floor) grey.
    let colour_of = |server: &str| match server {
        "ringcast" => RGBColor(0, 114, 178),
        "nchan" => RGBColor(213, 94, 0),
        _ => RGBColor(120, 120, 120),
    };
    for (area, panel) in body.split_evenly((1, panels.len())).iter().zip(&panels) {
        let points = |server: &str| -> Vec<(f64, f64)> {
            runs.get(server)
                .map(|m| {
                    m.iter()
                        .filter_map(|(subs, vs)| {
                            let mut xs: Vec<f64> = vs
                                .iter()
                                .filter_map(|v| field(v, panel.key)?.as_f64())
                                .collect();
                            xs.sort_by(f64::total_cmp);
                            let median = *xs.get(xs.len() / 2)?;
                            Some((*subs as f64 / 1000.0, median * panel.scale))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let all: Vec<(f64, f64)> = runs.keys().flat_map(|s| points(s)).collect();
        let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
        let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("subscribers (thousands)")
            .label_style(("sans-serif", 13))
            .draw()?;
        for server in runs.keys() {
            let colour = colour_of(server);
            let pts = points(server);
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))?
                .label(server.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    println!("chart: {output}");
    Ok(())
}
