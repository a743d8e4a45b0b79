//! A redis-server of the tests' own (Debian `redis-server`), started on a
//! free loopback port or a given address, with no persistence: the shared
//! location store of `tests/redis_registrar.rs` and `tests/pool_flows.rs`.
//! Missing: the tests say so loudly and pass, and fail under `CI=true`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server of our own: no persistence, loopback only.
pub struct Redis {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

impl Redis {
    /// Start redis-server on a free loopback port; None (after a loud
    /// message) when it is not installed, outside CI.
    pub fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        Redis::start_at(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub fn start_at(addr: SocketAddr) -> Option<Redis> {
        if redis_binary().is_none() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("redis-server is not installed (CI=true): apt-get install redis-server");
            }
            eprintln!(
                "\n==== SKIPPED: redis-server is not installed (apt-get install redis-server); \
                 the shared location store tests did not run ====\n"
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "sipforge-redis-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            child: None,
            addr,
            dir,
        };
        redis.run();
        Some(redis)
    }

    /// (Re)start the server on its address and wait until it answers.
    pub fn run(&mut self) {
        let child = Command::new(redis_binary().expect("redis-server"))
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--bind", &self.addr.ip().to_string()])
            .args(["--port", &self.addr.port().to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server at {} never answered",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers PING.
    pub fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Send one command (RESP) and return its answer's first line, e.g.
    /// `+OK` or `-ERR ...`.
    pub fn command(&self, args: &[&str]) -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .expect("connect to redis-server");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(out.as_bytes()).expect("send to redis-server");
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .expect("redis-server answers");
        line.trim_end().to_owned()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }
}
