//! Template hashes for `pod-template-hash` and `controller-revision-hash`
//! labels (`controller.ComputeHash`: FNV-32a over the template and the
//! collision count, printed with `rand.SafeEncodeString`). The template is
//! hashed as its canonical JSON, so equal templates hash equally in every
//! ackemu process.

use serde::Serialize;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

pub fn fnv32a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(FNV_OFFSET, |h, b| (h ^ *b as u32).wrapping_mul(FNV_PRIME))
}

/// `rand.SafeEncodeString`: no vowels, no confusable characters.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// The hash of `template` with `collision_count` mixed in.
pub fn compute_hash<T: Serialize>(template: &T, collision_count: Option<i32>) -> String {
    // serde_json::Value keeps object keys sorted: canonical.
    let v = serde_json::to_value(template).unwrap_or(serde_json::Value::Null);
    let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_vectors() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn collision_count_changes_hash() {
        let t = serde_json::json!({"spec": {"containers": [{"name": "a"}]}});
        let a = compute_hash(&t, None);
        assert_eq!(a, compute_hash(&t, None));
        assert_ne!(a, compute_hash(&t, Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
