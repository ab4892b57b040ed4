//! Avro bodies of `lumen.enriched` written straight as ClickHouse RowBinary
//! rows of `events`, without decoding them into an [`EnrichedEvent`].
//!
//! Both formats are positional and the schema's fields are the table's
//! columns in the same order, so a row is a walk over the Avro body that
//! copies each value in its RowBinary form: no owned string per field, no
//! event, no serde on either side. Decoding into events and serializing
//! their borrowed rows took the delivery tasks 4.3 CPU-µs per row, this
//! 2.2 with the insert's compression and HTTP included (`make bench-sink`,
//! 300 000 rows, threads' CPU from /proc; see the README).
//!
//! The walk is built once from the parsed schema, so the types are the
//! schema's, and it applies the model's conventions exactly like
//! [`Record::row`](crate::row::Record::row), which stays the reference: an
//! absent string becomes `''`, an enum its `Enum8` code, `event_id` a
//! `UUID`. It validates what the Avro decoder validated (lengths, union
//! branches, enum indexes, booleans, UTF-8, trailing bytes, then the event
//! id), so the same records become dead letters with the same reasons.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::EnumSchema;
use lumen_schemas::{AvroRecord, EnrichedEvent, Error};
use serde::de::DeserializeOwned;
use serde::de::IntoDeserializer;
use uuid::Uuid;

use crate::row::{self, EventRow};

/// How one Avro field becomes one column.
#[derive(Debug)]
enum Column {
    /// A string holding a UUID → `UUID`.
    Uuid,
    /// `string` → `String`.
    Text,
    /// `["null", "string"]` → `String`, `''` for null.
    OptionalText,
    /// `long` (timestamps included) → `Int64` / `DateTime64(3)`.
    Long,
    /// `["null", "long"]` → `Nullable(Int64)`.
    OptionalLong,
    /// `boolean` → `Bool`.
    Boolean,
    /// An enum → `Enum8`, by the code of each symbol index.
    Enum(Vec<i8>),
    /// `["null", enum]` → `Nullable(Enum8)`.
    OptionalEnum(Vec<i8>),
}

/// Writes Avro bodies of the current [`EnrichedEvent`] schema as rows of
/// [`EventRow`]'s columns.
#[derive(Debug)]
pub struct Transcoder {
    columns: Vec<Column>,
}

impl Transcoder {
    /// The walk of the current schema; fails if a field has no column of
    /// the same name at the same position, or a type the row has no
    /// convention for.
    pub fn new() -> lumen_schemas::Result<Self> {
        let invalid = |reason: String| Error::InvalidSchema {
            name: EnrichedEvent::NAME,
            reason,
        };
        let schema =
            Schema::parse_str(EnrichedEvent::SCHEMA).map_err(|e| invalid(e.to_string()))?;
        let Schema::Record(record) = schema else {
            return Err(invalid("not a record".to_owned()));
        };
        let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        if names != <EventRow<'_> as clickhouse::Row>::COLUMN_NAMES {
            return Err(invalid(format!(
                "fields {names:?} are not the columns of events"
            )));
        }
        // Enums are defined once and referred to by name afterwards.
        let mut enums: HashMap<String, Vec<i8>> = HashMap::new();
        let mut columns = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let column = match &field.schema {
                Schema::String if field.name == "event_id" => Column::Uuid,
                Schema::String => Column::Text,
                Schema::Long | Schema::TimestampMillis => Column::Long,
                Schema::Boolean => Column::Boolean,
                Schema::Enum(definition) => Column::Enum(enum_codes(definition, &mut enums)?),
                Schema::Union(union) => match union.variants() {
                    [Schema::Null, Schema::String] => Column::OptionalText,
                    [Schema::Null, Schema::Long | Schema::TimestampMillis] => Column::OptionalLong,
                    [Schema::Null, Schema::Enum(definition)] => {
                        Column::OptionalEnum(enum_codes(definition, &mut enums)?)
                    }
                    [Schema::Null, Schema::Ref { name }] => {
                        Column::OptionalEnum(enums.get(name.name()).cloned().ok_or_else(|| {
                            invalid(format!("{}: {name:?} is not an enum", field.name))
                        })?)
                    }
                    other => return Err(invalid(format!("{}: union {other:?}", field.name))),
                },
                other => return Err(invalid(format!("{}: type {other:?}", field.name))),
            };
            columns.push(column);
        }
        Ok(Self { columns })
    }

    /// Appends the row of the Avro `body` (current schema, no header) to
    /// `out`; on error `out` is left as it was.
    pub fn row(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), (&'static str, String)> {
        let start = out.len();
        let result = self.write(body, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), (&'static str, String)> {
        let mut body = Body(body);
        let mut invalid_id = None;
        let corrupt = |message: String| {
            let error = Error::CorruptBody(message);
            (error.reason(), error.to_string())
        };
        for column in &self.columns {
            match column {
                Column::Uuid => {
                    let text = body.text().map_err(corrupt)?;
                    // Checked after the whole body, as the decoder did.
                    let uuid = Uuid::try_parse_ascii(text).unwrap_or_else(|e| {
                        invalid_id = Some(e.to_string());
                        Uuid::nil()
                    });
                    let (high, low) = uuid.as_u64_pair();
                    out.extend_from_slice(&high.to_le_bytes());
                    out.extend_from_slice(&low.to_le_bytes());
                }
                Column::Text => put_text(out, body.text().map_err(corrupt)?),
                Column::OptionalText => {
                    let text = if body.present().map_err(corrupt)? {
                        body.text().map_err(corrupt)?
                    } else {
                        b""
                    };
                    put_text(out, text);
                }
                Column::Long => out.extend_from_slice(&body.long().map_err(corrupt)?.to_le_bytes()),
                Column::OptionalLong => {
                    if body.present().map_err(corrupt)? {
                        out.push(0);
                        out.extend_from_slice(&body.long().map_err(corrupt)?.to_le_bytes());
                    } else {
                        out.push(1);
                    }
                }
                Column::Boolean => out.push(u8::from(body.boolean().map_err(corrupt)?)),
                Column::Enum(codes) => {
                    out.extend_from_slice(&body.symbol(codes).map_err(corrupt)?.to_le_bytes());
                }
                Column::OptionalEnum(codes) => {
                    if body.present().map_err(corrupt)? {
                        out.push(0);
                        out.extend_from_slice(&body.symbol(codes).map_err(corrupt)?.to_le_bytes());
                    } else {
                        out.push(1);
                    }
                }
            }
        }
        if !body.0.is_empty() {
            let error = Error::TrailingBytes(body.0.len());
            return Err((error.reason(), error.to_string()));
        }
        match invalid_id {
            Some(detail) => Err(("invalid_event_id", detail)),
            None => Ok(()),
        }
    }
}

/// The `Enum8` code of each symbol of `definition`, in symbol order, and
/// remembers them under the enum's name for later references.
fn enum_codes(
    definition: &EnumSchema,
    enums: &mut HashMap<String, Vec<i8>>,
) -> lumen_schemas::Result<Vec<i8>> {
    let symbols = &definition.symbols;
    let codes = match definition.name.name() {
        "EventKind" => codes(symbols, row::kind_code),
        "ShareMethod" => codes(symbols, row::share_method_code),
        "Channel" => codes(symbols, row::channel_code),
        "Attribution" => codes(symbols, row::attribution_code),
        "Confidence" => codes(symbols, row::confidence_code),
        "DeviceType" => codes(symbols, row::device_type_code),
        "TokenStatus" => codes(symbols, row::token_status_code),
        other => Err(format!("enum {other} has no Enum8 codes")),
    }
    .map_err(|reason| Error::InvalidSchema {
        name: EnrichedEvent::NAME,
        reason,
    })?;
    enums.insert(definition.name.name().to_owned(), codes.clone());
    Ok(codes)
}

/// The code of each symbol, through the Rust enum it names (the same
/// serde names the Avro decoder used).
fn codes<E: DeserializeOwned>(symbols: &[String], code: fn(E) -> i8) -> Result<Vec<i8>, String> {
    symbols
        .iter()
        .map(|symbol| {
            E::deserialize(symbol.as_str().into_deserializer())
                .map(code)
                .map_err(|e: serde::de::value::Error| format!("symbol {symbol}: {e}"))
        })
        .collect()
}

/// A RowBinary `String`: its length as unsigned LEB128, then its bytes.
fn put_text(out: &mut Vec<u8>, text: &[u8]) {
    let mut len = text.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(text);
}

/// The unread rest of an Avro body. Errors are the decoder's `CorruptBody`
/// messages.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    /// A zigzag varint `long` (at most 10 bytes).
    fn long(&mut self) -> Result<i64, String> {
        lumen_schemas::codec::read_long(&mut self.0)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.0.len() {
            return Err(format!("{len} bytes wanted, {} left", self.0.len()));
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    /// A string's bytes, checked to be UTF-8.
    fn text(&mut self) -> Result<&'a [u8], String> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| format!("string length {len}"))?;
        let bytes = self.take(len)?;
        // Nearly every string is ASCII, which is UTF-8, and `is_ascii` is
        // inlined where `from_utf8` is a call per string: 10% of the walk.
        if !bytes.is_ascii() {
            std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        }
        Ok(bytes)
    }

    /// Whether the `["null", T]` union holds a `T`.
    fn present(&mut self) -> Result<bool, String> {
        match self.long()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("union branch {other} of 2")),
        }
    }

    fn boolean(&mut self) -> Result<bool, String> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("boolean byte {other}")),
        }
    }

    /// The code of the enum symbol whose index comes next.
    fn symbol(&mut self, codes: &[i8]) -> Result<i8, String> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .and_then(|index| codes.get(index).copied())
            .ok_or_else(|| format!("enum index {index} of {}", codes.len()))
    }
}

#[cfg(test)]
mod tests {
    use lumen_schemas::Codec;
    use lumen_schemas::codec::split_header;
    use rstest::rstest;

    use super::*;
    use crate::row::sample;

    fn body_of(event: &EnrichedEvent) -> Vec<u8> {
        let payload = Codec::new().expect("codec").encode(event).expect("encode");
        split_header(&payload).expect("header").1.to_vec()
    }

    #[rstest]
    #[case(0)]
    #[case(3)]
    #[case(5)]
    #[case(6)]
    fn a_row_has_every_column_in_order(#[case] n: u64) {
        let event = sample::event(n, 1_764_000_000_000);
        let mut out = Vec::new();
        Transcoder::new()
            .expect("transcoder")
            .row(&body_of(&event), &mut out)
            .expect("row");
        let uuid = Uuid::parse_str(&event.event_id).expect("uuid");
        let (high, low) = uuid.as_u64_pair();
        assert_eq!(out[..8], high.to_le_bytes());
        assert_eq!(out[8..16], low.to_le_bytes());
        let site = &out[16..];
        assert_eq!(usize::from(site[0]), event.site_id.len());
        assert_eq!(&site[1..=event.site_id.len()], event.site_id.as_bytes());
    }

    #[test]
    fn long_strings_get_multi_byte_lengths() {
        let mut out = Vec::new();
        put_text(&mut out, "x".repeat(300).as_bytes());
        assert_eq!(out[..2], [0xAC, 0x02]);
        assert_eq!(out.len(), 302);
    }

    #[test]
    fn zigzag_longs_decode() {
        for value in [0i64, -1, 1, 63, -64, 1_764_000_000_000, i64::MIN, i64::MAX] {
            let zigzag = ((value << 1) ^ (value >> 63)) as u64;
            let mut bytes = Vec::new();
            let mut rest = zigzag;
            while rest >= 0x80 {
                bytes.push((rest as u8) | 0x80);
                rest >>= 7;
            }
            bytes.push(rest as u8);
            assert_eq!(Body(&bytes).long(), Ok(value));
        }
    }

    #[test]
    fn strings_must_be_utf8_like_the_decoder_wants_them() {
        let transcoder = Transcoder::new().expect("transcoder");
        let mut event = sample::event(1, 1_764_000_000_000);
        event.site_id = "café-€".to_owned();
        let mut out = Vec::new();
        transcoder.row(&body_of(&event), &mut out).expect("row");
        assert_eq!(&out[17..17 + event.site_id.len()], event.site_id.as_bytes());

        let codec = Codec::<EnrichedEvent>::new().expect("codec");
        let mut payload = codec.encode(&event).expect("encode");
        let euro = payload
            .windows(3)
            .position(|w| w == "€".as_bytes())
            .expect("the euro sign's bytes");
        payload[euro] = 0xFF;
        let decoded = codec.decode(&payload);
        assert_eq!(decoded.map_err(|e| e.reason()).err(), Some("corrupt_body"));
        let body = split_header(&payload).expect("header").1;
        let transcoded = transcoder.row(body, &mut out);
        assert_eq!(
            transcoded.map_err(|(reason, _)| reason),
            Err("corrupt_body")
        );
    }

    #[test]
    fn what_does_not_decode_writes_nothing() {
        let transcoder = Transcoder::new().expect("transcoder");
        let event = sample::event(1, 1_764_000_000_000);
        let body = body_of(&event);
        let mut out = vec![7];
        let truncated = transcoder.row(&body[..body.len() - 1], &mut out);
        assert_eq!(truncated.map_err(|(reason, _)| reason), Err("corrupt_body"));
        let mut trailing = body.clone();
        trailing.push(0);
        let trailing = transcoder.row(&trailing, &mut out);
        assert_eq!(
            trailing.map_err(|(reason, _)| reason),
            Err("trailing_bytes")
        );
        let mut bad_id = event;
        bad_id.event_id = "not-a-uuid".to_owned();
        let bad_id = transcoder.row(&body_of(&bad_id), &mut out);
        assert_eq!(
            bad_id.map_err(|(reason, _)| reason),
            Err("invalid_event_id")
        );
        assert_eq!(out, vec![7]);
    }
}
