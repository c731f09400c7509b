//! The responsible-member calculation of Distro, bit for bit as Nacos computes it (wire
//! reference §5.4.3), so Nacre and Java members agree on who owns an HTTP client.

/// Java's `String.hashCode`: `h = 31*h + c` over UTF-16 code units, wrapping at 32 bits.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// `abs(hash % Integer.MAX_VALUE) % n` with Java's truncating remainder.
pub fn distro_index(tag: &str, n: usize) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let h = java_string_hash(tag);
    // Java's `%` truncates toward zero, as Rust's does; the result's magnitude is < MAX.
    let r = (h % i32::MAX).unsigned_abs() as usize;
    Some(r % n)
}

/// The member responsible for `tag` among the healthy members, which must be sorted in
/// Java `String` order (for the ASCII `ip:port` names of members, byte order).
pub fn responsible<'a>(tag: &str, sorted_healthy: &'a [String]) -> Option<&'a String> {
    distro_index(tag, sorted_healthy.len()).map(|i| &sorted_healthy[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_code_vectors() {
        // Values of `"...".hashCode()` in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("Aa"), 2112);
        assert_eq!(java_string_hash("BB"), 2112);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_string_hash("127.0.0.1:8080"), -35_736_627);
        // A non-BMP character is two UTF-16 code units: 31 * 0xD83D + 0xDE00.
        assert_eq!(java_string_hash("\u{1F600}"), 1_772_899);
        // Non-ASCII BMP characters count once each.
        assert_eq!(java_string_hash("é"), 233);
    }

    #[test]
    fn index_handles_min_value_and_negative_hashes() {
        // MIN_VALUE % MAX_VALUE == -1 in Java, abs gives 1.
        assert_eq!(distro_index("polygenelubricants", 2), Some(1));
        assert_eq!(distro_index("polygenelubricants", 7), Some(1));
        // -35736627 % 2147483647 = -35736627 → 35736627 % 3 = 0.
        assert_eq!(distro_index("127.0.0.1:8080", 3), Some(0));
        assert_eq!(distro_index("x", 0), None);
    }

    #[test]
    fn responsible_indexes_the_sorted_members() {
        let members = vec![
            "10.0.0.3:8848".to_string(),
            "10.0.0.1:8848".to_string(),
            "10.0.0.2:8848".to_string(),
        ];
        let idx = distro_index("127.0.0.1:8080", 3).expect("non-empty");
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(idx, 0);
        assert_eq!(
            responsible("127.0.0.1:8080", &sorted),
            Some(&"10.0.0.1:8848".to_string())
        );
        assert_eq!(responsible("t", &[]), None);
    }
}
