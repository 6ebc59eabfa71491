//! A broker that does nothing: the load generator's ceiling.
//!
//! `null_broker HOST PORT` (or `-c CONFIG`, reading only `listen:` and whether there is an
//! `authorization` block) accepts NATS clients, sends each an INFO, answers every `PING` with
//! `PONG` and throws everything else away. No parsing, no routing, no delivery, no auth. A load
//! generator run against it measures the generator itself: publish rates and connect rates a
//! real broker cannot beat with that generator, whatever its speed. `scripts/ceiling.sh` runs
//! the load generator (tools/natsbench) against it next to ringnats and nats-server.
//!
//! Not a broker: a `PING` inside a payload is answered too; fine for benchmark payloads.

use std::net::SocketAddr;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// INFO without and with an authentication request (then with a nonce, so that nkey clients
/// sign it as they would for a real server; the signature is not checked).
macro_rules! info {
    ($($extra:literal)?) => {
        concat!(
            "INFO {\"server_id\":\"NULL\",\"server_name\":\"null\",\"version\":\"2.9.10\",",
            "\"proto\":1,\"go\":\"none\",\"host\":\"127.0.0.1\",\"port\":4222,\"headers\":true,",
            "\"max_payload\":1048576",
            $($extra,)?
            "}\r\n"
        )
    };
}
const INFO: &str = info!();
const INFO_AUTH: &str = info!(",\"auth_required\":true,\"nonce\":\"bm90LWEtcmVhbC1ub25jZQ\"");
const PING: &[u8] = b"PING\r\n";

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, info) = match args.as_slice() {
        [flag, config] if flag == "-c" => from_config(config)?,
        [host, port] => (format!("{host}:{port}"), INFO),
        _ => {
            eprintln!("usage: null_broker HOST PORT | null_broker -c CONFIG");
            std::process::exit(2);
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream, info));
        }
    })
}

/// The `listen: HOST:PORT` line of a nats-server config, and whether it asks for any kind of
/// authentication (an `authorization` block): then every client is asked to authenticate,
/// and every client is let in.
fn from_config(path: &str) -> std::io::Result<(String, &'static str)> {
    let text = std::fs::read_to_string(path)?;
    let listen = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no listen line"))?;
    let info = if text.contains("authorization") {
        INFO_AUTH
    } else {
        INFO
    };
    Ok((listen, info))
}

async fn serve(mut stream: TcpStream, info: &'static str) {
    let _ = stream.set_nodelay(true);
    if stream.write_all(info.as_bytes()).await.is_err() {
        return;
    }
    let finder = memmem::Finder::new(PING);
    let mut buf = vec![0u8; 256 * 1024];
    // Bytes kept from the end of the last read, so a PING split across reads is seen.
    let mut carry = 0;
    loop {
        let n = match stream.read(&mut buf[carry..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let filled = carry + n;
        let pings = finder.find_iter(&buf[..filled]).count();
        for _ in 0..pings {
            if stream.write_all(b"PONG\r\n").await.is_err() {
                return;
            }
        }
        // Keep the last few bytes unless they end a PING already counted.
        let keep = (PING.len() - 1).min(filled);
        let tail_start = filled - keep;
        if buf[..filled].ends_with(PING) {
            carry = 0;
        } else {
            buf.copy_within(tail_start..filled, 0);
            carry = keep;
        }
    }
}
