//! A tiny HTTP/1.x responder for `--metrics ADDR`: `GET /metrics` (the
//! exposition), `GET /healthz` (alive) and `GET /ready` (503 once draining,
//! so a load balancer stops sending new work). One request per connection,
//! `Connection: close`; a bounded number of connections at once, each with
//! a time limit and a size limit on the request head, so slow or bad
//! clients cost little and never stop the proxy.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time for a client to send its request and read the answer.
const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// Bind the metrics listener (done before the proxy starts, so a bad
/// address fails the start).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve scrapes until the task is aborted. `draining` turns `/ready` to 503.
pub async fn serve(listener: TcpListener, draining: Arc<AtomicBool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Wait for a free slot before accepting: excess clients queue in the backlog.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // e.g. EMFILE: back off a little instead of spinning.
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let draining = Arc::clone(&draining);
        tokio::spawn(async move {
            let served = tokio::time::timeout(CONNECTION_TIME, handle(stream, &draining)).await;
            if served.is_err() {
                tracing::debug!(%peer, "metrics: client too slow, connection closed");
            }
            drop(permit);
        });
    }
}

async fn handle(mut stream: TcpStream, draining: &AtomicBool) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head_complete(&head) {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
    };
    let response = if complete {
        respond(&head, draining.load(Ordering::Relaxed))
    } else if head.len() > MAX_HEAD {
        plain(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        )
    } else if head.is_empty() {
        return;
    } else {
        plain(400, "Bad Request", "incomplete request\n")
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// The response to a complete request head.
fn respond(head: &[u8], draining: bool) -> Vec<u8> {
    let line_end = head
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return plain(400, "Bad Request", "request line is not UTF-8\n");
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return plain(400, "Bad Request", "expected: METHOD PATH HTTP/1.x\n");
    };
    if !version.starts_with("HTTP/1.") {
        return plain(400, "Bad Request", "only HTTP/1.x is spoken here\n");
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let mut r = plain(405, "Method Not Allowed", "use GET\n");
        insert_header(&mut r, "Allow: GET, HEAD\r\n");
        return r;
    }
    let path = target.split('?').next().unwrap_or("");
    let mut response = match path {
        "/metrics" => ok(super::CONTENT_TYPE, super::encode().into_bytes()),
        "/healthz" => plain(200, "OK", "ok\n"),
        "/ready" if draining => plain(503, "Service Unavailable", "draining\n"),
        "/ready" => plain(200, "OK", "ready\n"),
        "/" => plain(200, "OK", "sipforge: see /metrics, /healthz, /ready\n"),
        _ => plain(404, "Not Found", "not found\n"),
    };
    if head_only && let Some(at) = find_body(&response) {
        response.truncate(at);
    }
    response
}

fn ok(content_type: &str, body: Vec<u8>) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

fn plain(code: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Insert a header line before the blank line of a built response.
fn insert_header(response: &mut Vec<u8>, line: &str) {
    if let Some(at) = find_body(response) {
        response.splice(at - 2..at - 2, line.bytes());
    }
}

/// Offset of the body (just after the blank line).
fn find_body(response: &[u8]) -> Option<usize> {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Vec<u8>) -> String {
        String::from_utf8(r).unwrap()
    }

    #[test]
    fn routes_and_errors() {
        let r = text(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false));
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("openmetrics-text"));
        assert!(r.ends_with("# EOF\n"));
        let r = text(respond(b"HEAD /metrics HTTP/1.0\r\n\r\n", false));
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let r = text(respond(b"GET /metrics?x=1 HTTP/1.0\n\n", false));
        assert!(r.starts_with("HTTP/1.1 200"));
        let r = text(respond(b"POST /metrics HTTP/1.1\r\n\r\n", false));
        assert!(
            r.starts_with("HTTP/1.1 405") && r.contains("Allow: GET, HEAD\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\nuse GET\n"), "{r}");
        assert!(text(respond(b"GET /nope HTTP/1.1\r\n\r\n", false)).starts_with("HTTP/1.1 404"));
        assert!(text(respond(b"GET /ready HTTP/1.1\r\n\r\n", true)).starts_with("HTTP/1.1 503"));
        assert!(text(respond(b"GET /ready HTTP/1.1\r\n\r\n", false)).starts_with("HTTP/1.1 200"));
        for bad in [
            &b"\xff\xfe\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"\r\n\r\n",
        ] {
            let r = text(respond(bad, false));
            assert!(r.starts_with("HTTP/1.1 400"), "{bad:?}: {r}");
        }
    }
}
