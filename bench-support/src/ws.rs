//! A minimal WebSocket client (RFC 6455) for the benchmarks: enough to speak Bayeux to any server without
//! pulling a client library into the workspace. Text frames only; pings are ignored (neither server
//! sends them unasked).

use std::io;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The receiving half of a connection: reads the server's frames.
pub struct Reader(BufReader<OwnedReadHalf>);
/// The sending half of a connection: writes masked text frames.
pub struct Writer(OwnedWriteHalf);

/// Opens `ws://addr/path`.
pub async fn connect(addr: &str, path: &str) -> io::Result<(Reader, Writer)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    wr.write_all(req.as_bytes()).await?;
    let mut rd = BufReader::new(rd);
    let mut status = String::new();
    rd.read_line(&mut status).await?;
    if !status.contains(" 101 ") {
        return Err(io::Error::other(format!("upgrade refused: {status}")));
    }
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
    }
    Ok((Reader(rd), Writer(wr)))
}

/// Sends a Bayeux `/meta/handshake` for the WebSocket transport and returns the client id the server
/// handed out (an error says why there was none: the socket closed, or the server refused).
pub async fn handshake(rd: &mut Reader, wr: &mut Writer) -> io::Result<String> {
    let hs = serde_json::json!([{"channel": "/meta/handshake", "version": "1.0", "id": "h",
        "supportedConnectionTypes": ["websocket"]}]);
    wr.send(&hs.to_string()).await?;
    let text = rd
        .recv()
        .await?
        .ok_or_else(|| io::Error::other("closed during handshake"))?;
    let reply: serde_json::Value = serde_json::from_str(&text).map_err(io::Error::other)?;
    reply[0]["clientId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("handshake refused: {text}")))
}

impl Writer {
    /// Sends one masked text frame (clients must mask).
    pub async fn send(&mut self, text: &str) -> io::Result<()> {
        let payload = text.as_bytes();
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x81);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0.write_all(&frame).await
    }
}

impl Reader {
    /// The next text (or binary) message, reassembled from fragments; `None` once the peer closes.
    pub async fn recv(&mut self) -> io::Result<Option<String>> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            if self.0.read_exact(&mut head).await.is_err() {
                return Ok(None);
            }
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                len = u64::from(self.0.read_u16().await?);
            } else if len == 127 {
                len = self.0.read_u64().await?;
            }
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 {
                self.0.read_exact(&mut mask).await?;
            }
            // Read straight onto the end of the message: a big room's roster is hundreds of KB a
            // frame, and every copy of it is the load generator's time, not the server's.
            let start = message.len();
            message.resize(start + len as usize, 0);
            self.0.read_exact(&mut message[start..]).await?;
            if head[1] & 0x80 != 0 {
                message[start..]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= mask[i % 4]);
            }
            match opcode {
                0x8 => return Ok(None),
                0x9 | 0xa => {
                    message.truncate(start);
                    continue;
                }
                _ => {}
            }
            if fin {
                return Ok(Some(String::from_utf8(message).unwrap_or_else(|e| {
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                })));
            }
        }
    }
}
