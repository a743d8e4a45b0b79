//! naive-relay: the floor of the sipforge benchmark.
//!
//! A single-threaded UDP relay that does no SIP parsing at all. It knows
//! one UAS address: every datagram from the UAS goes to the last address
//! that sent anything else (the UAC), every other datagram goes to the
//! UAS. That is enough for one sipp UAC and one sipp UAS on 127.0.0.1,
//! because sipp sends every request to its remote address and answers to
//! the source address of what it received.
//!
//! Usage: naive-relay --listen IP:PORT --uas IP:PORT [--rcvbuf BYTES]
//! Stops on SIGTERM/SIGINT (default action).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

const SOL_SOCKET: i32 = 1;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const core::ffi::c_void, len: u32) -> i32;
}

fn set_buffer(socket: &UdpSocket, option: i32, bytes: i32) -> bool {
    // SAFETY: a valid fd and a pointer to an i32 of the given length.
    let rc = unsafe {
        setsockopt(
            socket.as_raw_fd(),
            SOL_SOCKET,
            option,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    rc == 0
}

struct Args {
    listen: SocketAddr,
    uas: SocketAddr,
    rcvbuf: i32,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut uas = None;
    let mut rcvbuf = 1 << 20;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|_| format!("--listen {value}: not IP:PORT"))?),
            "--uas" => uas = Some(value.parse().map_err(|_| format!("--uas {value}: not IP:PORT"))?),
            "--rcvbuf" => rcvbuf = value.parse().map_err(|_| format!("--rcvbuf {value}: not a number"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen IP:PORT is required")?,
        uas: uas.ok_or("--uas IP:PORT is required")?,
        rcvbuf,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("naive-relay: {e}\nusage: naive-relay --listen IP:PORT --uas IP:PORT [--rcvbuf BYTES]");
            return ExitCode::from(2);
        }
    };
    let socket = match UdpSocket::bind(args.listen) {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("naive-relay: cannot bind {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if !set_buffer(&socket, SO_RCVBUF, args.rcvbuf) || !set_buffer(&socket, SO_SNDBUF, args.rcvbuf) {
        eprintln!("naive-relay: warning: cannot set the socket buffers to {} bytes", args.rcvbuf);
    }
    eprintln!("naive-relay: listening on {}, UAS {}", args.listen, args.uas);
    let mut buf = vec![0u8; 65_535];
    let mut uac: Option<SocketAddr> = None;
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            // ICMP port unreachable from an earlier send surfaces here.
            Err(_) => continue,
        };
        let to = if from == args.uas {
            match uac {
                Some(addr) => addr,
                None => continue,
            }
        } else {
            uac = Some(from);
            args.uas
        };
        let _ = socket.send_to(&buf[..len], to);
    }
}
