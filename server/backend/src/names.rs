//! Names of users and group rooms. A user's name is their account, so names
//! are compared as identifiers: two names that look the same must be the
//! same name.

use unicode_normalization::UnicodeNormalization;

use crate::error::ApiError;

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt,
/// Unicode 15.1): characters that render as nothing (zero-width space,
/// joiners, bidi marks, the byte order mark, variation selectors, tags,
/// Hangul fillers, the soft hyphen, ...).
const DEFAULT_IGNORABLE: [(u32, u32); 17] = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

fn is_default_ignorable(c: char) -> bool {
    let c = u32::from(c);
    DEFAULT_IGNORABLE
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// A name as an identifier: without default-ignorable code points, in NFKC
/// (fullwidth `ａｄａ` is `ada`, `ﬁ` is `fi`), again without ignorables (NFKC
/// can produce one: U+FFA0 becomes U+1160), trimmed.
pub(crate) fn normalize_name(raw: &str) -> String {
    let visible = raw.chars().filter(|&c| !is_default_ignorable(c));
    let name: String = visible
        .nfkc()
        .filter(|&c| !is_default_ignorable(c))
        .collect();
    name.trim().to_owned()
}

/// Checks a name or room name after [`normalize_name`]: 1..=`max`
/// characters, no control characters. `code` is the error code and `what`
/// names the field in the message.
pub(crate) fn clean_name(
    raw: &str,
    max: usize,
    code: &'static str,
    what: &str,
) -> Result<String, ApiError> {
    let name = normalize_name(raw);
    let chars = name.chars().count();
    if chars == 0 || chars > max {
        return Err(ApiError::bad_request(
            code,
            format!(
                "unable to use the {what}; it must be 1 to {max} visible characters after trimming"
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            code,
            format!("unable to use the {what}; it contains control characters"),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            clean_name("  Ada ", 40, "invalid_name", "name").unwrap(),
            "Ada"
        );
        assert!(clean_name(&"é".repeat(40), 40, "invalid_name", "name").is_ok());
        // Decomposed and composed forms are one name.
        assert_eq!(
            clean_name("e\u{301}", 40, "invalid_name", "name").unwrap(),
            "\u{e9}"
        );
        // An ignorable between a letter and its accent does not split them.
        assert_eq!(normalize_name("e\u{200b}\u{301}"), "\u{e9}");
        assert_eq!(normalize_name("\u{ffa0}x"), "x");
        assert_eq!(normalize_name("ﬁ ａｄａ\u{feff}"), "fi ada");
        for bad in ["", "   ", "a\nb", "\u{7}", &"x".repeat(41), "\u{200b}"] {
            assert_eq!(
                clean_name(bad, 40, "invalid_name", "name")
                    .unwrap_err()
                    .code(),
                "invalid_name"
            );
        }
    }
}
