//! Display names of users and group rooms.

use crate::error::ApiError;

/// Checks a name or room name: trimmed, 1..=`max` characters, no control
/// characters. `code` is the error code and `what` names the field in the
/// message.
pub(crate) fn clean_name<'a>(
    raw: &'a str,
    max: usize,
    code: &'static str,
    what: &str,
) -> Result<&'a str, ApiError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > max {
        return Err(ApiError::bad_request(
            code,
            format!("unable to use the {what}; it must be 1 to {max} characters after trimming"),
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
        for bad in ["", "   ", "a\nb", "\u{7}", &"x".repeat(41)] {
            assert_eq!(
                clean_name(bad, 40, "invalid_name", "name")
                    .unwrap_err()
                    .code(),
                "invalid_name"
            );
        }
    }
}
