//! A counting TCP proxy on loopback in front of the AWS emulator: every accepted connection and
//! every HTTP request head that passes through it is logged with its time, so a run can count
//! what a function asked of AWS before its first `next`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One thing the proxy saw.
#[derive(Debug, Clone)]
pub enum Traffic {
    Connection(Instant),
    /// A request head: its time and a summary (`POST / DynamoDB_20120810.GetItem`).
    Request(Instant, String),
}

#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Traffic>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let proxy = Self { addr, log };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.record(Traffic::Connection(Instant::now()));
                let this = accepting.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        this.forward(client, server).await;
                    }
                });
            }
        });
        Ok(proxy)
    }

    fn record(&self, traffic: Traffic) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(traffic);
    }

    /// Everything seen in `[from, until)`.
    pub fn between(&self, from: Instant, until: Instant) -> Vec<Traffic> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|t| {
                let at = match t {
                    Traffic::Connection(at) | Traffic::Request(at, _) => *at,
                };
                at >= from && at < until
            })
            .cloned()
            .collect()
    }

    async fn forward(&self, client: TcpStream, server: TcpStream) {
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let upstream = async {
            let mut scanner = RequestScanner::default();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let now = Instant::now();
                for summary in scanner.feed(&buf[..n]) {
                    self.record(Traffic::Request(now, summary));
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = server_write.shutdown().await;
        };
        let downstream = async {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
        };
        tokio::join!(upstream, downstream);
    }
}

/// Finds HTTP/1.1 request heads in a client's byte stream (bodies skipped by `Content-Length`).
/// A chunked body ends the scan of that connection: its later requests are not counted (the AWS
/// SDK's JSON requests carry a length).
#[derive(Debug, Default)]
pub struct RequestScanner {
    head: Vec<u8>,
    body_left: usize,
    gave_up: bool,
}

impl RequestScanner {
    /// Feeds bytes; returns a summary of every request head completed by them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        while !bytes.is_empty() && !self.gave_up {
            if self.body_left > 0 {
                let skip = self.body_left.min(bytes.len());
                self.body_left -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            self.head.push(bytes[0]);
            bytes = &bytes[1..];
            if self.head.ends_with(b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.head).into_owned();
                self.head.clear();
                let (summary, length, chunked) = summarize(&head);
                found.push(summary);
                self.body_left = length;
                self.gave_up = chunked;
            } else if self.head.len() > 64 * 1024 {
                self.gave_up = true;
            }
        }
        found
    }
}

/// `METHOD path [x-amz-target]`, the body's length, and whether the body is chunked.
fn summarize(head: &str) -> (String, usize, bool) {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let mut target = None;
    let mut length = 0;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "x-amz-target" => target = Some(value.to_owned()),
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let summary = match target {
        Some(t) => format!("{method} {path} {t}"),
        None => format!("{method} {path}"),
    };
    (summary, length, chunked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_request_head_and_skips_bodies_across_reads() {
        let body = "{\"a\":\"GET / HTTP/1.1\\r\\n\\r\\n\"}";
        let one = format!(
            "POST / HTTP/1.1\r\nx-amz-target: DynamoDB_20120810.GetItem\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let two = "GET /moto-api/?x=1 HTTP/1.1\r\nhost: x\r\n\r\n";
        let stream = format!("{one}{two}");
        let mut scanner = RequestScanner::default();
        let mut found = Vec::new();
        for piece in stream.as_bytes().chunks(7) {
            found.extend(scanner.feed(piece));
        }
        assert_eq!(
            found,
            vec!["POST / DynamoDB_20120810.GetItem", "GET /moto-api/"]
        );
    }

    #[test]
    fn a_chunked_body_ends_the_scan() {
        let stream =
            "POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n";
        let mut scanner = RequestScanner::default();
        assert_eq!(scanner.feed(stream.as_bytes()), vec!["POST /a"]);
    }
}
