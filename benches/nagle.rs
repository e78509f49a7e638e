//! Nagle's algorithm meets delayed ACK: why `TCP_NODELAY` exists.
//!
//! A client writes each request in two small pieces (a header, then a body, say) on one
//! persistent connection, and the server answers only once it has the whole request. With
//! Nagle's algorithm on (the default), the second piece is held back until the first is
//! acknowledged; the server, which has nothing to answer yet, delays that ACK hoping to send
//! it with a reply. Both wait, until the delayed-ACK timer fires (40 ms on Linux). With
//! `TCP_NODELAY` the second piece leaves at once and a round trip takes microseconds.
//!
//! This measures it on loopback; timing belongs in a benchmark, not in a test that must pass
//! on a busy machine:
//!
//! ```text
//! cargo bench --bench nagle
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket_lab::options::{self, TcpOptions};

/// The request is written as these two pieces.
const HEADER: &[u8] = b"GET /x HTTP/1.1\r\n";
const BODY: &[u8] = b"\r\n";
const REPLY: &[u8] = b"ok";
/// Round trips measured per setting: enough for a median, few enough to finish in seconds.
const ROUNDS: usize = 40;
const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> io::Result<()> {
    for nodelay in [false, true] {
        let mut times = measure(nodelay)?;
        times.sort();
        let median = times[times.len() / 2];
        let slowest = times[times.len() - 1];
        println!(
            "TCP_NODELAY {:<5}  {ROUNDS} requests in two writes each: median {:>9.3} ms, slowest {:>9.3} ms",
            nodelay,
            median.as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// Times `ROUNDS` request/reply round trips on one connection.
fn measure(nodelay: bool) -> io::Result<Vec<Duration>> {
    let loopback: SocketAddr = "127.0.0.1:0".parse().map_err(io::Error::other)?;
    let listener = options::listen(loopback, 1, &TcpOptions::rust_std())?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let mut request = vec![0; HEADER.len() + BODY.len()];
        for _ in 0..ROUNDS {
            // The server answers only a whole request, as an HTTP server would.
            stream.read_exact(&mut request)?;
            stream.write_all(REPLY)?;
        }
        Ok(())
    });

    let options = TcpOptions {
        nodelay,
        ..TcpOptions::rust_std()
    };
    let mut client: TcpStream = options::connect(addr, TIMEOUT, &options)?;
    client.set_read_timeout(Some(TIMEOUT))?;
    let mut reply = [0; REPLY.len()];
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        client.write_all(HEADER)?;
        client.write_all(BODY)?;
        client.read_exact(&mut reply)?;
        times.push(started.elapsed());
    }
    server
        .join()
        .map_err(|_| io::Error::other("the server thread panicked"))??;
    Ok(times)
}
