//! Sibling instances: two processes sharing a port during a rollout pass
//! each other the responses that belong to the other's transactions.
//!
//! With SO_REUSEPORT the kernel hashes each flow to one of the processes,
//! and a relayed request has two flows (the caller's and the callee's), so
//! the callee's responses can land on the instance that does not hold the
//! transaction. Every branch of ours, stateless or stateful, carries its
//! instance's random tag and a check keyed with a secret the instances of
//! one host share (`proxy::branch`; see [`shared_secret`]), and every
//! instance listens on a Unix datagram socket named after its tag in a
//! private runtime directory (see [`directory`]). A response whose top Via
//! carries another instance's tag is passed to that socket with its source
//! address and handled there as if it had been received there. When the
//! send fails (the owner is gone, or its queue is full), the response is
//! handled here: its check verifies (same secret), so it is forwarded
//! statelessly to its next Via.
//!
//! Who may write to the link: the directory is created mode 0700 and must
//! belong to our effective user, the socket is 0600, so only processes of
//! the same user (and root) can send to it or bind a name in it. (The link
//! used to be an abstract socket, `@sipforge.<tag>`: any process of the
//! network namespace could pass it a "response" with a forged source
//! address, or bind the name of an instance that had left, whose tag is in
//! every Via it sent, and take the responses meant for it.) Anything on
//! the link that is not a passed-on response for one of our transactions
//! is dropped and counted (`sipforge_drops_total{reason="sibling"}`).
//!
//! The check costs one substring search per response; only foreign
//! responses are parsed here. Only responses are passed on: requests do
//! not carry our branch.
//!
//! The link carries one other message: a new instance started with
//! `--takeover` asks the instances holding its ports to drain (see
//! [`super::takeover`]).

use std::fs::{self, DirBuilder};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram as StdUnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use memchr::memmem;

use tokio::net::UnixDatagram;

use super::{MAX_DATAGRAM, Shared, handle_one};
use crate::metrics::{self, DropReason};
use crate::proxy::Outgoing;
use crate::proxy::branch::{OUR_PREFIX, branch_instance};
use crate::sip::Message;

/// First bytes of a passed-on datagram (then: socket index, source length,
/// source as text, the datagram).
const MAGIC: &[u8; 5] = b"SFSB1";

/// How long [`Link::broadcast`] waits for room in one sibling's queue.
const BROADCAST_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Names the directory of the link sockets; every instance that may share
/// a port with this one must see the same directory.
pub const DIRECTORY_VARIABLE: &str = "SIPFORGE_RUNTIME_DIR";

/// Our end of the link: the socket siblings send to, and one to send from.
pub(super) struct Link {
    tag: u32,
    directory: PathBuf,
    receiver: UnixDatagram,
    sender: StdUnixDatagram,
    /// The device and inode of our socket file, to remove it at the end
    /// only if it is still ours.
    file: (u64, u64),
}

/// The directory of the link sockets: `$SIPFORGE_RUNTIME_DIR` when set,
/// else `$XDG_RUNTIME_DIR/sipforge` when that is set, else
/// `sipforge-<euid>` in the temporary directory (`/tmp`).
pub fn directory() -> PathBuf {
    let set = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = set(DIRECTORY_VARIABLE) {
        return dir;
    }
    if let Some(xdg) = set("XDG_RUNTIME_DIR") {
        return xdg.join("sipforge");
    }
    std::env::temp_dir().join(format!("sipforge-{}", euid()))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The socket file of instance `tag` in `directory`.
fn socket_path(directory: &Path, tag: u32) -> PathBuf {
    directory.join(format!("{tag:08x}"))
}

/// Create `directory` (mode 0700) or check the one there: a directory (not
/// a symbolic link) of our effective user, made 0700 if it was more open.
/// One owned by anybody else is refused: whoever owns it could read and
/// write our link.
fn private_directory(directory: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(directory) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(directory)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}", directory.display()),
        ))
    };
    if !meta.is_dir() {
        return refuse("not a directory".into());
    }
    if meta.uid() != euid() {
        return refuse(format!(
            "owned by uid {}, not by us (uid {})",
            meta.uid(),
            euid()
        ));
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(directory, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Remove the sockets of instances that ended without removing theirs
/// (killed): nobody receives on them any more, so connecting is refused.
fn sweep_stale(directory: &Path, ours: &Path) {
    let Ok(entries) = fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_socket = entry.file_type().is_ok_and(|t| t.is_socket());
        if !is_socket || path == ours {
            continue;
        }
        let Ok(probe) = StdUnixDatagram::unbound() else {
            return;
        };
        if let Err(e) = probe.connect(&path)
            && e.kind() == io::ErrorKind::ConnectionRefused
        {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The file of the branch secret the instances of this host share.
const SECRET_FILE: &str = "branch-secret";

/// The secret that keys our branch checks, shared by every instance that
/// uses the same private [`directory`] (the instances of a rollout): the
/// first one writes 32 random bytes to `branch-secret` (mode 0600, created
/// exclusively), the others read it, so a response to a branch that an
/// instance made can be checked by the other after it left. None when the
/// directory or the file is not usable (then each process keys its own).
pub fn shared_secret() -> Option<Vec<u8>> {
    shared_secret_in(&directory())
        .inspect_err(|e| {
            tracing::warn!(
                "no branch secret shared with sibling instances ({e}): this instance keys its branches alone"
            )
        })
        .ok()
}

fn shared_secret_in(directory: &Path) -> io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    private_directory(directory)?;
    let path = directory.join(SECRET_FILE);
    for _ in 0..3 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let mut secret = [0u8; 32];
                // SAFETY: getrandom writes at most `secret.len()` bytes into it.
                let n = unsafe { libc::getrandom(secret.as_mut_ptr().cast(), secret.len(), 0) };
                if n != secret.len() as isize {
                    let _ = fs::remove_file(&path);
                    return Err(io::Error::other("getrandom failed"));
                }
                file.write_all(&secret)?;
                file.sync_all()?;
                return Ok(secret.to_vec());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(&path)?;
                if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{}: not a private file of ours", path.display()),
                    ));
                }
                let mut secret = Vec::with_capacity(32);
                fs::File::open(&path)?.read_to_end(&mut secret)?;
                if secret.len() >= 16 {
                    return Ok(secret);
                }
                // Another instance is writing it right now: read again.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("the secret file stays incomplete"))
}

impl Link {
    /// Listen under this instance's tag in [`directory`]. Must run inside
    /// a tokio runtime.
    pub(super) fn bind(tag: u32) -> io::Result<Link> {
        Link::bind_in(directory(), tag)
    }

    fn bind_in(directory: PathBuf, tag: u32) -> io::Result<Link> {
        private_directory(&directory)?;
        let path = socket_path(&directory, tag);
        // A socket left by a killed instance that drew the same tag.
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            fs::remove_file(&path)?;
        }
        let receiver = StdUnixDatagram::bind(&path)?;
        // The directory already keeps everybody else out; the mode says so
        // on the file too.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        let meta = fs::symlink_metadata(&path)?;
        sweep_stale(&directory, &path);
        receiver.set_nonblocking(true)?;
        let sender = StdUnixDatagram::unbound()?;
        sender.set_nonblocking(true)?;
        tracing::debug!(link = %path.display(), "sibling link bound");
        Ok(Link {
            tag,
            directory,
            receiver: UnixDatagram::from_std(receiver)?,
            sender,
            file: (meta.dev(), meta.ino()),
        })
    }
}

impl Link {
    /// Send `message` to every other live instance of our directory; how
    /// many took it. Unlike passed-on responses, it waits (a little) for
    /// room in a busy sibling's queue rather than being lost: it is sent
    /// once, at the start.
    pub(super) fn broadcast(&self, message: &[u8]) -> usize {
        let ours = socket_path(&self.directory, self.tag);
        let (Ok(entries), Ok(sender)) = (fs::read_dir(&self.directory), StdUnixDatagram::unbound())
        else {
            return 0;
        };
        if sender.set_write_timeout(Some(BROADCAST_WAIT)).is_err() {
            return 0;
        }
        entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_socket()))
            .map(|entry| entry.path())
            .filter(|path| *path != ours)
            .filter(|path| sender.send_to(message, path).is_ok())
            .count()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let path = socket_path(&self.directory, self.tag);
        let still_ours = fs::symlink_metadata(&path).is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if still_ours {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Finds our stateful branches in a datagram.
static BRANCH: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(OUR_PREFIX.as_bytes()));

/// The instance tag of a response whose top Via is a stateful branch of
/// any sipforge instance (parses the message).
fn tag_of(datagram: &[u8]) -> Option<u32> {
    if !datagram.starts_with(b"SIP/2.0 ") {
        return None;
    }
    BRANCH.find(datagram)?;
    let msg = Message::parse(datagram).ok()?;
    branch_instance(msg.top_via()?.branch?)
}

/// The tag of the instance a response belongs to, when it is another
/// instance's. Cheap for the common cases: a response without a stateful
/// branch costs a substring search, one with our own tag (the first
/// occurrence is our Via, on top) a few more bytes; only a foreign tag is
/// confirmed by parsing the message.
fn foreign_tag(datagram: &[u8], ours: u32) -> Option<u32> {
    if !datagram.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let at = BRANCH.find(datagram)?;
    let token = datagram[at..]
        .split(|b| matches!(b, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
        .next()?;
    let first = std::str::from_utf8(token).ok().and_then(branch_instance);
    if first == Some(ours) {
        return None;
    }
    tag_of(datagram).filter(|tag| *tag != ours)
}

/// Pass a response received on socket `index` to the sibling that owns it;
/// true when it was handed over (and must not be handled here).
pub(super) fn pass_on(shared: &Shared, index: usize, datagram: &[u8], source: SocketAddr) -> bool {
    let Some(link) = &shared.sibling else {
        return false;
    };
    let Some(tag) = foreign_tag(datagram, link.tag) else {
        return false;
    };
    let Ok(index) = u8::try_from(index) else {
        return false;
    };
    let to = socket_path(&link.directory, tag);
    let source_text = source.to_string();
    let Ok(source_len) = u8::try_from(source_text.len()) else {
        return false;
    };
    let mut envelope = Vec::with_capacity(MAGIC.len() + 2 + source_text.len() + datagram.len());
    envelope.extend_from_slice(MAGIC);
    envelope.push(index);
    envelope.push(source_len);
    envelope.extend_from_slice(source_text.as_bytes());
    envelope.extend_from_slice(datagram);
    match link.sender.send_to(&envelope, &to) {
        Ok(_) => {
            metrics::sibling_passed(true);
            tracing::debug!(%source, sibling = format_args!("{tag:08x}"), "response passed to the instance that holds its transaction");
            true
        }
        Err(e) => {
            tracing::debug!(%source, sibling = format_args!("{tag:08x}"), "sibling unreachable ({e}): response handled here");
            false
        }
    }
}

/// The socket index, the source and the datagram of a passed-on response.
fn open(envelope: &[u8]) -> Option<(usize, SocketAddr, &[u8])> {
    let rest = envelope.strip_prefix(MAGIC.as_slice())?;
    let (&index, rest) = rest.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (source, datagram) = rest.split_at_checked(usize::from(len))?;
    let source = std::str::from_utf8(source).ok()?.parse().ok()?;
    Some((usize::from(index), source, datagram))
}

/// The socket index, the source and the datagram of a passed-on response
/// for one of our transactions (`ours`, on one of our `sockets`); anything
/// else is not what a sibling sends, and is dropped and counted.
fn accept(envelope: &[u8], ours: u32, sockets: usize) -> Option<(usize, SocketAddr, &[u8])> {
    let accepted = open(envelope)
        .filter(|(index, _, datagram)| *index < sockets && tag_of(datagram) == Some(ours));
    if accepted.is_none() {
        metrics::dropped(DropReason::Sibling);
        tracing::debug!(
            len = envelope.len(),
            "sibling link: not a passed-on response for one of our transactions; dropped"
        );
    }
    accepted
}

/// Handle what siblings pass on, until the server stops.
pub(super) async fn receive_loop(shared: Arc<Shared>) {
    let Some(link) = &shared.sibling else {
        return;
    };
    let mut buf = vec![0u8; MAX_DATAGRAM + 128];
    let mut out: Vec<Outgoing> = Vec::with_capacity(4);
    let mut stop = shared.stop.clone();
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => return,
            received = link.receiver.recv(&mut buf) => received,
        };
        let Ok(n) = received else {
            continue;
        };
        if super::takeover::is_request(&buf[..n]) {
            super::on_takeover_request(&shared, &buf[..n]);
            continue;
        }
        let Some((index, source, datagram)) = accept(&buf[..n], link.tag, shared.sockets.len())
        else {
            continue;
        };
        metrics::sibling_passed(false);
        handle_one(&shared, index, datagram, source, &mut out);
        crate::logbuf::flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_of_one_directory_share_the_branch_secret() {
        let dir = std::env::temp_dir().join(format!(
            "sipforge-secret-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        let first = shared_secret_in(&dir).unwrap();
        let second = shared_secret_in(&dir).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(first, second);
        let meta = fs::metadata(dir.join(SECRET_FILE)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        // A file others may read is not trusted.
        fs::set_permissions(dir.join(SECRET_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(shared_secret_in(&dir).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    fn response(branch: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn only_other_instances_responses_are_foreign() {
        // Stateful: `<shard>.<slot>.<generation>.<n>.<instance>.<tail>`.
        let tail = "0000beef0123456789ab";
        assert_eq!(
            foreign_tag(&response(&format!("z9hG4bKsfT0.0.0.0.beef.{tail}")), 0xcafe),
            Some(0xbeef)
        );
        assert_eq!(
            foreign_tag(&response(&format!("z9hG4bKsfT0.0.0.0.cafe.{tail}")), 0xcafe),
            None
        );
        // Stateless: request hash, loop key, instance, check (all hex).
        let stateless = "z9hG4bKsf0123456789abcdef0000beef0000beef0123456789ab";
        assert_eq!(foreign_tag(&response(stateless), 0xcafe), Some(0xbeef));
        assert_eq!(foreign_tag(&response(stateless), 0xbeef), None);
        assert_eq!(foreign_tag(&response("z9hG4bKsf0123456789abcdef"), 1), None);
        assert_eq!(foreign_tag(&response("z9hG4bKsfT0.0.0"), 1), None);
        let request =
            b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKsfT0.0.0.0.beef\r\n\r\n";
        assert_eq!(foreign_tag(request, 1), None);
        assert_eq!(foreign_tag(b"SIP/2.0 garbage branch=z9hG4bKsfT", 1), None);
    }

    #[test]
    fn envelopes_round_trip_and_refuse_garbage() {
        let source: SocketAddr = "[2001:db8::1]:5070".parse().unwrap();
        let text = source.to_string();
        let mut e = MAGIC.to_vec();
        e.push(3);
        e.push(text.len() as u8);
        e.extend_from_slice(text.as_bytes());
        e.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        assert_eq!(open(&e), Some((3, source, &b"SIP/2.0 200 OK\r\n"[..])));
        for bad in [
            &b""[..],
            b"SFSB1",
            b"SFSB1\x00",
            b"SFSB1\x00\x50abc",
            b"XXXXX\x00\x01a",
            b"SFSB1\x00\x03abc",
        ] {
            assert_eq!(open(bad), None, "{bad:?}");
        }
    }

    fn sibling_drops() -> f64 {
        let text = metrics::encode();
        let series = "sipforge_drops_total{reason=\"sibling\"} ";
        let line = text
            .lines()
            .find(|l| l.starts_with(series))
            .expect("the series exists from the start");
        line[series.len()..].trim().parse().unwrap()
    }

    fn envelope(index: u8, source: &str, datagram: &[u8]) -> Vec<u8> {
        let mut e = MAGIC.to_vec();
        e.push(index);
        e.push(source.len() as u8);
        e.extend_from_slice(source.as_bytes());
        e.extend_from_slice(datagram);
        e
    }

    #[test]
    fn the_link_accepts_only_our_responses_and_counts_the_rest() {
        let ours = envelope(
            1,
            "192.0.2.7:5060",
            &response("z9hG4bKsfT0.0.0.0.cafe.0000beef0123456789ab"),
        );
        let (index, source, datagram) = accept(&ours, 0xcafe, 2).expect("ours");
        assert_eq!((index, source), (1, "192.0.2.7:5060".parse().unwrap()));
        assert!(datagram.starts_with(b"SIP/2.0 200 OK"));

        let refused = [
            // Not an envelope at all.
            b"INVITE sip:b@x SIP/2.0\r\n\r\n".to_vec(),
            // Another instance's response.
            envelope(1, "192.0.2.7:5060", &response("z9hG4bKsfT0.0.0.0.beef.0000beef0123456789ab")),
            // A socket we do not have.
            envelope(2, "192.0.2.7:5060", &response("z9hG4bKsfT0.0.0.0.cafe.0000beef0123456789ab")),
            // A request, even with our branch.
            envelope(
                0,
                "192.0.2.7:5060",
                b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKsfT0.0.0.0.cafe.0000beef0123456789ab\r\n\r\n",
            ),
            // A response that does not parse.
            envelope(
                0,
                "192.0.2.7:5060",
                b"SIP/2.0 200 OK\r\nz9hG4bKsfT0.0.0.0.cafe.0000beef0123456789ab",
            ),
            // A source that is not an address.
            envelope(0, "evil", &response("z9hG4bKsfT0.0.0.0.cafe.0000beef0123456789ab")),
        ];
        for bad in &refused {
            let before = sibling_drops();
            assert_eq!(
                accept(bad, 0xcafe, 2),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(sibling_drops() > before, "dropped and counted");
        }
    }

    /// A scratch directory under the temporary directory, world-searchable
    /// so that only the link's own directory keeps other users out.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sipforge-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn the_link_lives_in_a_private_directory_and_is_removed_at_the_end() {
        let scratch = scratch("modes");
        let dir = scratch.join("link");
        let rt = runtime();
        let _guard = rt.enter();
        let link = Link::bind_in(dir.clone(), 0x1234_abcd).expect("bound");
        let path = socket_path(&dir, 0x1234_abcd);
        assert_eq!(mode(&dir), 0o700, "the directory is private");
        assert_eq!(mode(&path), 0o600, "the socket is private");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());

        // A second instance in the same directory: it can reach the first,
        // and removes nothing of it.
        let other = Link::bind_in(dir.clone(), 0x0000_0042).expect("a sibling");
        let sent = other
            .sender
            .send_to(b"hello", &path)
            .expect("same user: sent");
        assert_eq!(sent, 5);
        let mut buf = [0u8; 16];
        let received = rt.block_on(link.receiver.recv(&mut buf)).expect("received");
        assert_eq!(received, 5);
        // A broadcast (a takeover request) reaches every other live
        // instance, not the sender.
        assert_eq!(other.broadcast(b"SFTK1 test"), 1);
        let received = rt.block_on(link.receiver.recv(&mut buf)).expect("received");
        assert_eq!(&buf[..received], b"SFTK1 test");

        // A killed instance leaves its socket; the next one removes it.
        drop(other);
        assert!(!socket_path(&dir, 0x42).exists(), "removed at the end");
        let stale = socket_path(&dir, 0x77);
        drop(StdUnixDatagram::bind(&stale).unwrap());
        assert!(stale.exists());
        let third = Link::bind_in(dir.clone(), 0x99).unwrap();
        assert!(!stale.exists(), "a dead instance's socket is swept");
        assert!(path.exists(), "a live one is not");
        drop(StdUnixDatagram::bind(&stale).unwrap());
        assert_eq!(
            third.broadcast(b"SFTK1 test"),
            1,
            "a dead one is not counted"
        );
        drop((link, third));
        assert!(!path.exists());
        fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn a_directory_that_is_too_open_is_closed_and_one_of_another_user_refused() {
        let scratch = scratch("open");
        let dir = scratch.join("link");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        private_directory(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let file = scratch.join("file");
        fs::write(&file, b"").unwrap();
        assert!(private_directory(&file).is_err(), "not a directory");
        let link = scratch.join("symlink");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(
            private_directory(&link).is_err(),
            "a symbolic link is refused"
        );

        if euid() == 0 {
            let foreign = scratch.join("foreign");
            fs::create_dir(&foreign).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            let e = private_directory(&foreign).expect_err("another user's directory");
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        }
        fs::remove_dir_all(&scratch).unwrap();
    }

    /// Run as another user by [`another_user_cannot_write_to_the_link`]:
    /// sending to the link named by the variable must be refused.
    #[test]
    fn probe_as_another_user() {
        let Some(path) = std::env::var_os("SIPFORGE_SIBLING_PROBE") else {
            return;
        };
        let probe = StdUnixDatagram::unbound().unwrap();
        let e = probe
            .send_to(&envelope(0, "192.0.2.7:5060", b"SIP/2.0 200 OK\r\n"), &path)
            .expect_err("another user must not reach the link");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    }

    /// A process of another user cannot send to the link (run as root, the
    /// test binary runs itself again as `nobody`).
    #[test]
    fn another_user_cannot_write_to_the_link() {
        use std::os::unix::process::CommandExt;
        if euid() != 0 {
            println!(
                "SKIPPED another_user_cannot_write_to_the_link: needs root to run a probe as another user"
            );
            return;
        }
        let scratch = scratch("foreign-user");
        let dir = scratch.join("link");
        let rt = runtime();
        let _guard = rt.enter();
        let link = Link::bind_in(dir.clone(), 0xfeed).unwrap();
        let path = socket_path(&dir, 0xfeed);
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(&exe)
            .args([
                "net::sibling::tests::probe_as_another_user",
                "--exact",
                "--nocapture",
            ])
            .env("SIPFORGE_SIBLING_PROBE", &path)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("the probe runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            && stderr.contains("Permission denied")
            && !stdout.contains("running 1 test")
        {
            // The test binary itself is not readable by `nobody`.
            println!("SKIPPED another_user_cannot_write_to_the_link: {stderr}");
        } else {
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "the probe as another user:\n{stdout}\n{stderr}"
            );
        }
        let mut buf = [0u8; 64];
        let nothing = rt.block_on(tokio::time::timeout(
            std::time::Duration::from_millis(50),
            link.receiver.recv(&mut buf),
        ));
        assert!(nothing.is_err(), "nothing arrived");
        drop(link);
        fs::remove_dir_all(&scratch).unwrap();
    }
}
