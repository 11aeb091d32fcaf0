//! The underlay protocol between virtual NICs and the fabric: each UDP
//! datagram is one raw IPv4 packet, except a NIC's *hello*, which starts
//! with a zero byte (never the first byte of an IPv4 packet) and names the
//! instance with a token only cloudsim can compute (an HMAC of the
//! instance id under the account's signing key). NICs repeat their hello
//! every second, so a restarted fabric relearns where they are.

use crate::auth::hmac_sha256;

pub const HELLO_MAGIC: &[u8] = b"\0ackemu-vnic-hello\0";

/// The token a NIC proves its instance with.
pub fn token(signing_key: &str, instance_id: &str) -> String {
    hex::encode(
        &hmac_sha256(
            format!("vnic:{signing_key}").as_bytes(),
            instance_id.as_bytes(),
        )[..16],
    )
}

pub fn hello(instance_id: &str, token: &str) -> Vec<u8> {
    let mut m = HELLO_MAGIC.to_vec();
    m.extend_from_slice(instance_id.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(token.as_bytes());
    m
}

pub fn is_hello(datagram: &[u8]) -> bool {
    datagram.starts_with(HELLO_MAGIC)
}

/// The instance a hello names, if its token is right.
pub fn verify_hello<'a>(datagram: &'a [u8], signing_key: &str) -> Option<&'a str> {
    let rest = datagram.strip_prefix(HELLO_MAGIC)?;
    let text = std::str::from_utf8(rest).ok()?;
    let (id, tok) = text.split_once('\n')?;
    (!id.is_empty() && token(signing_key, id) == tok).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_forgery() {
        let t = token("k1", "i-abc");
        let h = hello("i-abc", &t);
        assert!(is_hello(&h));
        assert_eq!(verify_hello(&h, "k1"), Some("i-abc"));
        assert_eq!(verify_hello(&h, "k2"), None);
        assert_eq!(verify_hello(&hello("i-other", &t), "k1"), None);
        assert_eq!(verify_hello(b"\0ackemu-vnic-hello\0", "k1"), None);
        assert!(!is_hello(&[0x45, 0, 0, 20]));
        // A hello is never an IPv4 packet.
        assert!(crate::dataplane::packet::parse(&h).is_err());
    }
}
