//! Text helpers for messages: the one place that bounds how much of a string (an error body, a
//! long detail) we repeat in an error, a log line or a stored result.

/// At most `max` characters (Unicode scalar values, not bytes) of `s`, followed by `…` when
/// it was cut; `s` unchanged when it is no longer than that.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_by_characters() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("", 0), "");
        assert_eq!(clip("x", 0), "…");
        // characters, not bytes
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(clip("ééé", 3), "ééé");
    }
}
