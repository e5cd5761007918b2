//! A small HTTP/1.1 client for ClickHouse's HTTP interface over std's
//! `TcpStream`: one POST per connection (`Connection: close`), so a
//! keep-alive connection the server timed out can never eat an insert, and
//! at about one insert a second a new connection costs nothing that shows.
//! Written by hand rather than pulling in an async HTTP stack: the writer
//! thread is synchronous and needs only POST, Content-Length and chunked
//! responses.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the server is and how to talk to it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `host:port`, for the Host header and messages.
    pub authority: String,
    /// User (`X-ClickHouse-User`).
    pub user: String,
    /// Password (`X-ClickHouse-Key`).
    pub password: String,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// How long the server may take to answer one request.
    pub request_timeout: Duration,
    /// Whether request bodies go gzip-compressed.
    pub gzip: bool,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No connection, or it broke: the request may or may not have run.
    #[error("{authority}: {source}")]
    Io {
        /// The server.
        authority: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The server answered with an error status and message.
    #[error("{authority}: HTTP {status}: {body}")]
    Status {
        /// The server.
        authority: String,
        /// The HTTP status.
        status: u16,
        /// ClickHouse's message (`Code: 60, e.displayText() = …`).
        body: String,
    },
}

/// Splits `http://host:port[/]` (or `host:port`, `host`) into the
/// authority; port 8123 when none is given. Only plain HTTP.
pub fn parse_url(url: &str) -> Result<String, String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.contains("://") {
        return Err(format!("`{url}`: only http:// is supported"));
    } else {
        url
    };
    let auth = rest.trim_end_matches('/');
    if auth.is_empty() || auth.contains('/') || auth.contains('@') {
        return Err(format!("`{url}`: expected http://host:port"));
    }
    // `[::1]:8123`, `host:8123`, `host`, `[::1]`.
    let has_port = match auth.rfind(':') {
        Some(i) => !auth[i..].contains(']') && (auth.starts_with('[') || !auth[..i].contains(':')),
        None => false,
    };
    if has_port {
        let port = &auth[auth.rfind(':').unwrap_or(0) + 1..];
        port.parse::<u16>()
            .map_err(|_| format!("`{url}`: bad port `{port}`"))?;
        Ok(auth.to_string())
    } else {
        Ok(format!("{auth}:8123"))
    }
}

/// Percent-encodes a query-string value.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Endpoint {
    fn io(&self, source: io::Error) -> HttpError {
        HttpError::Io {
            authority: self.authority.clone(),
            source,
        }
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = self.authority.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.connect_timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.request_timeout))?;
                    s.set_write_timeout(Some(self.request_timeout))?;
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// POSTs `body` to `/?<query>` and returns the response body of a 200.
    pub fn post(&self, query: &str, body: &[u8]) -> Result<Vec<u8>, HttpError> {
        let packed;
        let (body, encoding) = if self.gzip {
            packed = gzip(body).map_err(|e| self.io(e))?;
            (&packed[..], "Content-Encoding: gzip\r\n")
        } else {
            (body, "")
        };
        let mut s = self.connect().map_err(|e| self.io(e))?;
        let head = format!(
            "POST /?{query} HTTP/1.1\r\nHost: {}\r\nX-ClickHouse-User: {}\r\nX-ClickHouse-Key: {}\r\n\
             Content-Type: application/octet-stream\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            self.user,
            self.password,
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(body))
            .map_err(|e| self.io(e))?;
        let (status, resp) = read_response(&mut BufReader::new(s)).map_err(|e| self.io(e))?;
        if status == 200 {
            Ok(resp)
        } else {
            Err(HttpError::Status {
                authority: self.authority.clone(),
                status,
                body: String::from_utf8_lossy(&resp).trim().to_string(),
            })
        }
    }
}

/// `data` gzip-compressed at level 1: RowBinary of log records shrinks
/// several times at a fraction of a core per 10 MB/s.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    z.write_all(data)?;
    z.finish()
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads a status line, headers and a body (Content-Length, chunked, or
/// up to EOF).
pub fn read_response<R: BufRead>(r: &mut R) -> io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if n == 0 {
                break;
            }
            let at = body.len();
            body.resize(at + n, 0);
            r.read_exact(&mut body[at..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:18123/").unwrap(),
            "127.0.0.1:18123"
        );
        assert_eq!(parse_url("localhost").unwrap(), "localhost:8123");
        assert_eq!(parse_url("http://[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(parse_url("[::1]").unwrap(), "[::1]:8123");
        assert!(parse_url("https://x:1").is_err());
        assert!(parse_url("http://x:99999").is_err());
        assert!(parse_url("http://u@x:1").is_err());
    }

    #[test]
    fn chunked_and_length() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (s, b) = read_response(&mut &raw[..]).unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        let raw = b"HTTP/1.1 500 Internal\r\nContent-Length: 4\r\n\r\nCodeXX";
        let (s, b) = read_response(&mut &raw[..]).unwrap();
        assert_eq!((s, b.as_slice()), (500, &b"Code"[..]));
        assert!(read_response(&mut &b""[..]).is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode_query("INSERT INTO a.b(x) FORMAT RowBinary"),
            "INSERT%20INTO%20a.b%28x%29%20FORMAT%20RowBinary"
        );
    }

    #[test]
    fn gzip_bodies_say_so_and_unpack_to_the_rows() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s);
            let (mut head, mut line) = (String::new(), String::new());
            while r.read_line(&mut line).unwrap() > 2 {
                head.push_str(&line);
                line.clear();
            }
            let len: usize = head
                .lines()
                .find_map(|h| h.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut plain)
                .unwrap();
            r.get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            (head, len, plain)
        });
        let ep = Endpoint {
            authority,
            user: "u".into(),
            password: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            gzip: true,
        };
        let rows = b"row row row row row row row row row row row row".repeat(20);
        assert_eq!(ep.post("query=x", &rows).unwrap(), b"ok");
        let (head, len, plain) = server.join().unwrap();
        assert!(head.contains("Content-Encoding: gzip\r\n"), "{head}");
        assert!(len < rows.len() / 4, "{len} bytes for {}", rows.len());
        assert_eq!(plain, rows);
    }
}
