//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! crate-private JSON reader. Not part of the API.

use super::json::Json;

/// The E2EE JSON reader: the compact text of what it read, or `None` where
/// it refused the text.
pub fn json_compact(text: &str) -> Option<String> {
    Json::parse(text).map(|json| json.to_compact_string())
}
