//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! crate-private parsers that no public function reaches on its own. Not part
//! of the API.

use super::{Error, Frame, RawFrame};

/// The client's frame reader ([`RawFrame::decode`], as the connection machine
/// reads every message): the frame with its data parsed, and the data's JSON
/// text by the `data` rule.
pub fn decode_raw_frame(text: &str) -> Result<(Frame, Option<String>), Error> {
    let raw = RawFrame::decode(text)?;
    let data_json = raw.data_json();
    Ok((raw.into_frame(), data_json))
}
