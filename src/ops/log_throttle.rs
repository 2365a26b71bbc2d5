//! At most one log line a second for a condition that can repeat
//! thousands of times a second (refused tokens, accept errors at the
//! open-files limit), with the count of the lines it held back, so a flood
//! cannot flood the log and no occurrence goes uncounted.

use std::sync::Mutex;

use crate::event::now_ns;

/// One throttled log line.
#[derive(Debug)]
pub struct LogThrottle {
    /// The second (of the process clock) of the last line logged, and the
    /// occurrences not logged since; `None` before the first.
    state: Mutex<Option<(u64, u64)>>,
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle {
            state: Mutex::new(None),
        }
    }
}

impl LogThrottle {
    /// `Some(held back since the last line)` when this occurrence should be
    /// logged, `None` when it is counted and held back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ns() / 1_000_000_000)
    }

    fn admit_at(&self, second: u64) -> Option<u64> {
        let mut st = self.state.lock().expect("log throttle lock");
        match &mut *st {
            Some((last, held)) if *last == second => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let n = *held;
                (*last, *held) = (second, 0);
                Some(n)
            }
            None => {
                *st = Some((second, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_held_back() {
        let t = LogThrottle::default();
        assert_eq!(t.admit_at(10), Some(0));
        assert_eq!(t.admit_at(10), None);
        assert_eq!(t.admit_at(10), None);
        assert_eq!(t.admit_at(11), Some(2));
        assert_eq!(t.admit_at(11), None);
        assert_eq!(t.admit_at(15), Some(1));
    }
}
