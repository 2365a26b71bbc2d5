//! `Fig`: a measured figure as the report writes it. Rounded when made, so
//! that a reader sees `30`, not `29.999999999999996`, and a script still
//! reads a number: three significant digits for rates, latencies and CPU
//! (the histograms and the 10 ms CPU clock resolve no more), or a whole
//! number for bytes and counts. Written as a JSON integer when it is one.
//! A figure that is not finite (a division by a zero-length phase) is not
//! made at all, so the field is left out rather than written as `null`.

use serde::{Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fig(f64);

impl Fig {
    /// `x` to three significant digits.
    pub(crate) fn sig3(x: f64) -> Option<Fig> {
        if !x.is_finite() {
            return None;
        }
        if x == 0.0 {
            return Some(Fig(0.0));
        }
        let digits = x.abs().log10().floor() as i32;
        // Dividing by (or multiplying by) an exact power of ten keeps the
        // result the nearest double to the decimal, which prints short.
        let r = if digits >= 2 {
            let p = 10f64.powi(digits - 2);
            (x / p).round() * p
        } else {
            let p = 10f64.powi(2 - digits);
            (x * p).round() / p
        };
        Some(Fig(r))
    }

    /// `x` to a whole number.
    pub(crate) fn whole(x: f64) -> Option<Fig> {
        x.is_finite().then(|| Fig(x.round()))
    }
}

impl Serialize for Fig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Exact as an integer below 2^53; every rounded figure here is.
        if self.0.fract() == 0.0 && self.0.abs() < 9e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Fig;

    #[test]
    fn rounds_and_writes() {
        let cases: [(f64, &str); 12] = [
            (29.999999999999996, "30"),
            (0.283_451, "0.283"),
            (2.433_333_333_333_333_6, "2.43"),
            (450_987.365_535_738, "451000"),
            (17_035.77, "17000"),
            (999.6, "1000"),
            (0.099_94, "0.0999"),
            (874.495, "874"),
            (1.0, "1"),
            (0.0, "0"),
            (-0.0, "0"),
            (-12.345, "-12.3"),
        ];
        for (x, want) in cases {
            let got = serde_json::to_string(&Fig::sig3(x).expect("finite")).expect("json");
            assert_eq!(got, want, "{x}");
        }
        assert_eq!(Fig::sig3(f64::NAN), None);
        assert_eq!(Fig::sig3(f64::INFINITY), None);
        let bytes = serde_json::to_string(&Fig::whole(1615.0528)).expect("json");
        assert_eq!(bytes, "1615");
    }
}
