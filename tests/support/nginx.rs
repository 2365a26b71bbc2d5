//! A real nginx run by a test (tests/nginx.rs, tests/cluster_lb.rs): from
//! a private prefix directory, in the foreground so that the test owns the
//! process, waited for until it answers, stopped (with its workers) on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{get, TIMEOUT};

/// A fresh, empty prefix directory `ringcast-<name>-<pid>-<n>` under the
/// temporary directory.
pub fn prefix(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ringcast-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One nginx process. On drop it is stopped and `dir` removed (kept, and
/// its error log printed, when the test fails).
pub struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Runs `nginx -p dir -c conf -e dir/error.log -g "daemon off; <globals>"`
    /// (`-g` adds directives to the main context, it changes nothing in
    /// `conf`), then waits until `GET path` on `addr` answers 200 through it.
    pub fn start(dir: PathBuf, conf: &Path, globals: &str, addr: SocketAddr, path: &str) -> Nginx {
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!("daemon off; {globals}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, dir };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!("nginx exited with {status}:\n{}", nginx.error_log());
            }
            if TcpStream::connect(addr).is_ok() && get(addr, path).status == 200 {
                return nginx;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not ready:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits. SIGKILL would
        // leave the workers running.
        // SAFETY: sending a signal to our own child process by pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("nginx error.log:\n{}", self.error_log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
