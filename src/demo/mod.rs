//! The `--demo` feed: a simulated quote stream (geometric Brownian motion per
//! symbol) published through the sequencer exactly like `POST /publish`, so
//! history, metrics and fan-out see a real feed. Runs on its own thread.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::event::NewEvent;
use crate::worker::Shared;

/// The demo page, embedded: no external assets.
pub(crate) const PAGE: &str = include_str!("page.html");

/// Publishing granularity of the feed.
const TICK: Duration = Duration::from_millis(10);

struct Instrument {
    topic: String,
    symbol: String,
    price: f64,
    /// Annualised volatility.
    sigma: f64,
    volume: u64,
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Instrument {
    fn new(topic: &str, rng: &mut fastrand::Rng) -> Self {
        Instrument {
            topic: topic.to_owned(),
            symbol: topic.rsplit('.').next().unwrap_or(topic).to_owned(),
            price: 20.0 + rng.f64() * 480.0,
            sigma: 0.2 + rng.f64() * 0.6,
            volume: 0,
        }
    }

    /// One GBM step of `dt` years, drift 0, and the quote as JSON.
    fn step(&mut self, dt: f64, rng: &mut fastrand::Rng) -> String {
        let z = normal(rng);
        self.price *= ((-0.5 * self.sigma * self.sigma) * dt + self.sigma * dt.sqrt() * z).exp();
        self.volume += 100 * (1 + rng.u64(0..20));
        let spread = (self.price * 0.0002).max(0.01);
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        serde_json::json!({
            "topic": self.topic,
            "symbol": self.symbol,
            "bid": round2(self.price - spread / 2.0),
            "ask": round2(self.price + spread / 2.0),
            "last": round2(self.price),
            "volume": self.volume,
            "ts": ts,
        })
        .to_string()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Starts the feed thread; it stops when the server starts draining.
pub(crate) fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    let symbols = shared.cfg.demo.symbols.clone();
    let rate = shared.cfg.demo.events_per_sec;
    std::thread::Builder::new()
        .name("ringcast-demo".into())
        .spawn(move || {
            let mut rng = fastrand::Rng::new();
            let mut book: Vec<Instrument> = symbols
                .iter()
                .map(|s| Instrument::new(s, &mut rng))
                .collect();
            // A tick of the demo is one trading minute, so prices visibly move.
            let dt = 1.0 / (252.0 * 6.5 * 60.0);
            let start = Instant::now();
            let mut sent: u64 = 0;
            // With auth on, the feed is in the default namespace: readable
            // with a token that has no tenant.
            let ns = if shared.cfg.auth.enabled() {
                crate::auth::DEFAULT_NAMESPACE
            } else {
                ""
            };
            while !shared.draining.load(Relaxed) {
                std::thread::sleep(TICK);
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                let n = due.saturating_sub(sent).min(10_000) as usize;
                if n == 0 || book.is_empty() {
                    continue;
                }
                sent = due;
                let events = (0..n)
                    .map(|_| {
                        let i = rng.usize(0..book.len());
                        let data = book[i].step(dt, &mut rng);
                        NewEvent {
                            topic: format!("{ns}{}", book[i].topic).into(),
                            event: Some("quote".into()),
                            data: data.into(),
                        }
                    })
                    .collect();
                // A full publish queue (or ring) means real publishers are
                // pushing hard: the demo yields its tick rather than adding
                // to the pressure.
                shared.ingest.submit_detached(events);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_sane_json() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut i = Instrument::new("quotes.NASDAQ.AAPL", &mut rng);
        for _ in 0..1000 {
            let q: serde_json::Value = serde_json::from_str(&i.step(1e-5, &mut rng)).unwrap();
            let (bid, ask) = (q["bid"].as_f64().unwrap(), q["ask"].as_f64().unwrap());
            assert!(bid > 0.0 && ask >= bid, "{q}");
            assert_eq!(q["symbol"], "AAPL");
        }
    }
}
