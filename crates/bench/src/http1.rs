//! A minimal HTTP/1.1 keep-alive client for load generation: one connection, one prepared
//! request at a time, responses framed by `Content-Length`.
//!
//! The load generator shares the machine's cores with the servers it measures, so its own cost
//! per request is taken from them: reqwest (pooling, URL parsing, header maps, body streams)
//! costs several times what writing prepared bytes and reading one framed answer does. Both
//! servers of a comparison are driven by this same client, so the comparison stays fair; it is
//! the servers' work that is left to compare. Anything it does not understand (a chunked body,
//! a closed connection, a malformed head) is an error, never a guess.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// A prepared request: the bytes to write, as is, on every send.
#[derive(Debug, Clone)]
pub struct Request(Vec<u8>);

impl Request {
    /// `POST path` to `host` with the given extra headers (`name: value`, no CRLF) and body.
    pub fn post(host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut head = format!("POST {path} HTTP/1.1\r\nhost: {host}\r\n");
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Request(bytes)
    }
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` that belong to the answer after the last one returned (none, in practice:
    /// one request is in flight at a time).
    consumed: usize,
}

impl Connection {
    /// Connects to `addr` (with `TCP_NODELAY`, as the request is written in one piece).
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(8192),
            consumed: 0,
        })
    }

    /// Sends `request` and reads its answer: the status code and the body.
    pub async fn send(&mut self, request: &Request) -> io::Result<(u16, &[u8])> {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.stream.write_all(&request.0).await?;
        let (head_len, status, body_len) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too long"));
            }
            self.fill().await?;
        };
        let end = head_len + body_len;
        while self.buf.len() < end {
            self.fill().await?;
        }
        self.consumed = end;
        Ok((status, &self.buf[head_len..end]))
    }

    async fn fill(&mut self) -> io::Result<()> {
        let start = self.buf.len();
        self.buf.resize(start + 8192, 0);
        let n = self.stream.read(&mut self.buf[start..]).await;
        self.buf.truncate(start + *n.as_ref().unwrap_or(&0));
        match n? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
            _ => Ok(()),
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A complete response head at the start of `buf`: its length, the status code and the body
/// length. `None` while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, u16, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("not an HTTP/1.1 status line"))?;
    let mut length = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("malformed header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| invalid("malformed content-length"))?;
            if n > MAX_BODY {
                return Err(invalid("response body too long"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("transfer-encoding is not supported"));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            return Err(invalid("the server closes the connection"));
        }
    }
    let length = length.ok_or_else(|| invalid("no content-length"))?;
    Ok(Some((end + 4, status, length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_or_refused() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx: y\r\n\r\nhello";
        assert_eq!(
            parse_head(ok).expect("a valid head"),
            Some((ok.len() - 5, 200, 5))
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").expect("test setup"),
            None
        );
        for bad in [
            &b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn keep_alive_exchanges_over_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test setup");
        let addr = listener.local_addr().expect("test setup");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("test setup");
            let mut seen = Vec::new();
            for i in 0..3u8 {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.expect("test setup");
                seen.extend_from_slice(&buf[..n]);
                // The answer in two writes, to exercise reading a split response.
                s.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
                    .await
                    .expect("test setup");
                s.write_all(&[b'a', b'0' + i]).await.expect("test setup");
            }
            seen
        });
        let mut conn = Connection::connect(addr).await.expect("test setup");
        let request = Request::post("h", "/p", &[("authorization", "Basic x")], b"k=v");
        for i in 0..3u8 {
            let (status, body) = conn.send(&request).await.expect("an answer");
            assert_eq!((status, body), (201, &[b'a', b'0' + i][..]));
        }
        let seen = String::from_utf8(server.await.expect("test setup")).expect("test setup");
        assert_eq!(seen.matches("POST /p HTTP/1.1\r\nhost: h\r\n").count(), 3);
        assert!(seen.contains("authorization: Basic x\r\ncontent-length: 3\r\n\r\nk=v"));
        // A closed connection is an error, not an empty answer.
        assert!(conn.send(&request).await.is_err());
    }
}
