//! How a resource's body is kept in the database: a zstd frame, compressed with a dictionary
//! trained on FHIR R4 JSON as this store writes it (`body.dict`, made by
//! `examples/train_body_dictionary.rs` from the Synthea fixtures and the server's own
//! AuditEvents).
//!
//! One body at a time gives a general compressor little to work with: a few hundred bytes,
//! each member name seen once. What makes bodies alike is shared across them (member names,
//! code systems, the `meta` the store stamps, the shape of an AuditEvent), and the dictionary
//! holds exactly that. A Bot execution's 674-byte AuditEvent is kept in 112 bytes, most of
//! them its ids and instants; the Synthea fixtures in 13% of their text (the dictionary has
//! seen those). Compressing one takes about 1.35 µs and reading it back 0.45 µs. HAPI (its
//! `JSONC` column) and IBM's server keep bodies compressed for the same reason.
//!
//! Rows written before bodies were compressed hold the JSON text itself. A frame begins with
//! zstd's magic number and JSON text with `{`, so both read back.

use std::cell::RefCell;
use std::sync::LazyLock;

use fhirop::store::StoreError;
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The dictionary every frame is compressed with. Frames name it by its id, and a frame that
/// names another is refused rather than decoded into wrong text; a new dictionary would have
/// to be added beside this one, never in its place.
const DICTIONARY: &[u8] = include_bytes!("body.dict");

/// On bodies this small the dictionary does most of the work: level 1 keeps an AuditEvent in
/// the same 112 bytes as zstd's default 3, 13% faster; negative levels are only 5% faster
/// still (the per-frame setup dominates) and keep it in 190.
const LEVEL: i32 = 1;

/// The first bytes of every zstd frame.
const FRAME_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

/// The largest body a frame may claim to hold: far above any request the server accepts, so
/// only a damaged frame reaches it, and it cannot make the reader reserve unbounded memory.
const LARGEST_BODY: u64 = 1 << 30;

static ENCODER_DICTIONARY: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(DICTIONARY, LEVEL));
static DECODER_DICTIONARY: LazyLock<DecoderDictionary<'static>> = LazyLock::new(|| DecoderDictionary::copy(DICTIONARY));

/// The largest read buffer a thread keeps between bodies; one for a larger body is dropped.
const KEPT_BUFFER: usize = 1 << 20;

thread_local! {
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    // A compression context is reused frame after frame; creating one costs more than
    // compressing a body. `None` until the thread first needs one, or when creating it failed.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> =
        RefCell::new(Compressor::with_prepared_dictionary(&ENCODER_DICTIONARY).ok());
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> =
        RefCell::new(Decompressor::with_prepared_dictionary(&DECODER_DICTIONARY).ok());
}

/// The bytes to store for a body's JSON text.
///
/// Should compression fail (it only can when memory runs out), the text is stored as it is:
/// [`read_text`] and [`decode_text`] read both, so the write loses nothing but space.
pub(crate) fn encode(text: String) -> Vec<u8> {
    let compressed = COMPRESSOR.with_borrow_mut(|compressor| {
        compressor
            .as_mut()
            .and_then(|compressor| compressor.compress(text.as_bytes()).ok())
    });
    compressed.unwrap_or_else(|| text.into_bytes())
}

/// The size of the text a stored body's frame holds, or `None` when the body is text written
/// before compression. A frame made with another dictionary, or claiming an unreadable size,
/// is refused.
fn frame_size(stored: &[u8]) -> Result<Option<usize>, StoreError> {
    if !stored.starts_with(&FRAME_MAGIC) {
        return Ok(None);
    }
    if zstd::zstd_safe::get_dict_id_from_frame(stored) != zstd::zstd_safe::get_dict_id_from_dict(DICTIONARY) {
        return Err(unreadable("its frame was compressed with another dictionary"));
    }
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) if size <= LARGEST_BODY => usize::try_from(size)
            .map(Some)
            .map_err(|_| unreadable("it is larger than this machine can hold")),
        _ => Err(unreadable("its frame does not say a readable size")),
    }
}

/// Decompresses a frame of `size` bytes of text into `buffer` (emptied first).
fn decompress_into(stored: &[u8], size: usize, buffer: &mut Vec<u8>) -> Result<(), StoreError> {
    buffer.clear();
    buffer.reserve(size);
    DECOMPRESSOR.with_borrow_mut(|decompressor| {
        let decompressor = decompressor
            .as_mut()
            .ok_or_else(|| unreadable("no decompression context could be created"))?;
        decompressor
            .decompress_to_buffer(stored, buffer)
            .map(drop)
            .map_err(|error| unreadable(&error.to_string()))
    })
}

/// Hands the JSON text of a stored body to `read`: a frame decompressed into a buffer the
/// thread reuses (a page of resources parses its bodies one after another), or text written
/// before compression, read in place.
pub(crate) fn read_text<T>(stored: &[u8], read: impl FnOnce(&str) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let Some(size) = frame_size(stored)? else {
        return read(utf8(stored)?);
    };
    // Taken, not borrowed, so that nothing `read` does can find the buffer in use.
    let mut buffer = READ_BUFFER.take();
    let result = decompress_into(stored, size, &mut buffer).and_then(|()| read(utf8(&buffer)?));
    if buffer.capacity() <= KEPT_BUFFER {
        READ_BUFFER.set(buffer);
    }
    result
}

/// A stored body's JSON text as a `String` of its own.
pub(crate) fn decode_text(stored: &[u8]) -> Result<String, StoreError> {
    match frame_size(stored)? {
        None => utf8(stored).map(str::to_owned),
        Some(size) => {
            let mut bytes = Vec::new();
            decompress_into(stored, size, &mut bytes)?;
            String::from_utf8(bytes).map_err(|_| not_utf8())
        }
    }
}

fn utf8(text: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(text).map_err(|_| not_utf8())
}

fn not_utf8() -> StoreError {
    unreadable("its text is not UTF-8")
}

fn unreadable(why: &str) -> StoreError {
    StoreError::Database(format!("a stored resource is unreadable: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT_EVENT: &str = r#"{"resourceType":"AuditEvent","id":"01a23a68-4231-7218-8be8-b220cf1fafe5","meta":{"versionId":"1","lastUpdated":"2026-12-03T05:37:20.947Z","project":"default"},"type":{"system":"https://medplum.com/CodeSystem/medplum","code":"execute","display":"Bot execution"},"period":{"start":"2026-12-03T05:37:20.927Z","end":"2026-12-03T05:37:20.930Z"},"recorded":"2026-12-03T05:37:20.930Z","outcome":"0","agent":[{"who":{"reference":"ClientApplication/admin"},"requestor":true}],"source":{"observer":{"reference":"Bot/01a23a68-419c-720c-aa01-ab4b073b79a5"}},"entity":[{"what":{"reference":"Bot/01a23a68-419c-720c-aa01-ab4b073b79a5"},"detail":[{"type":"durationMs","valueString":"3"}]}]}"#;

    #[test]
    fn a_body_comes_back_as_written_and_an_audit_event_is_kept_small() {
        let stored = encode(AUDIT_EVENT.to_owned());
        assert!(stored.starts_with(&FRAME_MAGIC));
        assert!(stored.len() * 4 < AUDIT_EVENT.len(), "{} bytes", stored.len());
        assert_eq!(decode_text(&stored).unwrap(), AUDIT_EVENT);
    }

    #[test]
    fn the_dictionary_has_the_id_frames_are_checked_against() {
        assert!(zstd::zstd_safe::get_dict_id_from_dict(DICTIONARY).is_some());
    }

    #[test]
    fn text_of_any_kind_survives_the_round_trip() {
        for text in [
            r#"{}"#,
            r#"{"resourceType":"Patient","name":[{"text":"Zoë \"Ω\" 😀\n\u0000"}]}"#,
            &format!(r#"{{"resourceType":"Binary","data":"{}"}}"#, "A".repeat(200_000)),
        ] {
            let stored = encode(text.to_owned());
            assert_eq!(decode_text(&stored).unwrap(), text);
            assert_eq!(read_text(&stored, |read| Ok(read.to_owned())).unwrap(), text);
        }
    }

    #[test]
    fn text_written_before_compression_reads_as_it_is() {
        let text = r#"{"resourceType":"Patient","id":"old"}"#;
        assert_eq!(decode_text(text.as_bytes()).unwrap(), text);
        let read = read_text(text.as_bytes(), |read| Ok(read.as_ptr()));
        assert_eq!(read.unwrap(), text.as_ptr(), "the stored text itself, not a copy");
    }

    #[test]
    fn a_damaged_or_foreign_frame_is_an_error_not_a_wrong_body() {
        let stored = encode(AUDIT_EVENT.to_owned());
        let cut = &stored[..stored.len() / 2];
        assert!(matches!(decode_text(cut), Err(StoreError::Database(_))));
        // Frames made with no dictionary, or another one, would decode into wrong text.
        let plain = zstd::bulk::compress(AUDIT_EVENT.as_bytes(), 3).unwrap();
        let other = zstd::bulk::Compressor::with_dictionary(3, br#"{"resourceType":"Basic"}"#)
            .and_then(|mut compressor| compressor.compress(AUDIT_EVENT.as_bytes()))
            .unwrap();
        for foreign in [plain, other] {
            assert!(matches!(decode_text(&foreign), Err(StoreError::Database(_))));
            assert!(matches!(read_text(&foreign, |_| Ok(())), Err(StoreError::Database(_))));
        }
        assert!(matches!(decode_text(b"\xff\xfe"), Err(StoreError::Database(_))));
        assert!(matches!(
            read_text(b"\xff\xfe", |_| Ok(())),
            Err(StoreError::Database(_))
        ));
    }
}
