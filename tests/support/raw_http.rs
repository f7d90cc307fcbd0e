//! Plain HTTP/1.1 requests to an apiserver, for the tests that look at exact answers: status
//! codes, content types and bodies as a client gets them.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

pub struct Answer {
    pub code: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        assert!(self.content_type.starts_with("application/json"), "{}", self.content_type);
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn protobuf(&self) -> Value {
        assert_eq!(self.content_type, PROTOBUF, "{}", String::from_utf8_lossy(&self.body));
        assert!(self.body.starts_with(b"k8s\0"), "{:?}", &self.body[..self.body.len().min(16)]);
        apiserver::protobuf_to_json(&self.body).unwrap_or_else(|error| panic!("{error}"))
    }
}

/// One HTTP/1.1 request on its own connection; a chunked answer (a watch) is joined.
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before it has read the whole body, and close.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let end = response.windows(4).position(|window| window == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let code = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap();
    let header = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_string)).unwrap_or_default()
    };
    let mut body = response[end + 4..].to_vec();
    if header("transfer-encoding") == "chunked" {
        body = unchunk(&body);
    }
    Answer { code, content_type: header("content-type"), body }
}

fn unchunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked.windows(2).position(|window| window == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&chunked[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunked[line_end + 2..line_end + 2 + size]);
        chunked = &chunked[line_end + 2 + size + 2..];
    }
}
