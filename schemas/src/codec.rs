//! Avro single-object encoding (`C3 01`, the writer schema's 8-byte
//! little-endian CRC-64-AVRO fingerprint, then the Avro body) with a registry
//! of every schema version this build knows, so a reader decodes a payload
//! written with any of them and resolves it to the current version.
//!
//! Decoding never panics on hostile bytes: every failure is a typed
//! [`Error`](crate::Error) that callers route to the dead-letter topic.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Mutex, Once, OnceLock};

use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Schema, from_value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::events::{EnrichedEvent, RawEvent, ShareRecord};
use crate::positional::Positional;

/// The two marker bytes that open every single-object encoded payload.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = MAGIC.len() + 8;

/// Largest allocation a decoded length may ask for. Real events are a few
/// KiB; the cap stops a forged length prefix from allocating gigabytes.
const MAX_ALLOCATION_BYTES: usize = 8 * 1024 * 1024;

/// A record type with an Avro schema in `avro/`.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// Record name, for errors.
    const NAME: &'static str;
    /// The current schema, the one this build writes.
    const SCHEMA: &'static str;
    /// Older schema versions still readable, oldest first.
    const HISTORY: &'static [&'static str] = &[];
}

impl AvroRecord for RawEvent {
    const NAME: &'static str = "RawEvent";
    const SCHEMA: &'static str = include_str!("../avro/raw_event.avsc");
}

impl AvroRecord for EnrichedEvent {
    const NAME: &'static str = "EnrichedEvent";
    const SCHEMA: &'static str = include_str!("../avro/enriched_event.avsc");
}

impl AvroRecord for ShareRecord {
    const NAME: &'static str = "ShareRecord";
    const SCHEMA: &'static str = include_str!("../avro/share_record.avsc");
}

/// Encoder and decoder for one record type. Build once, share freely.
pub struct Codec<T> {
    current: &'static Schema,
    /// Built once: resolving the schema for every record cost about half of
    /// an encode.
    writer: GenericDatumWriter<'static>,
    /// Built once, like `writer`, for payloads written with the current
    /// schema (nearly all of them): resolving its names per record was the
    /// largest single cost of a decode.
    reader: GenericDatumReader<'static>,
    fingerprint: u64,
    current_header: [u8; HEADER_LEN],
    writers: HashMap<u64, Schema>,
    record: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Codec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("record", &self.current.name())
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .field("versions", &self.writers.len())
            .finish()
    }
}

/// The current schema of `T`, parsed once per process and kept for its
/// lifetime (one per record type), so writers can borrow it from anywhere.
fn interned<T: AvroRecord + 'static>() -> Result<&'static Schema> {
    static INTERNED: OnceLock<Mutex<HashMap<TypeId, &'static Schema>>> = OnceLock::new();
    let mut interned = INTERNED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(schema) = interned.get(&TypeId::of::<T>()) {
        return Ok(schema);
    }
    let schema: &'static Schema = Box::leak(Box::new(parse::<T>(T::SCHEMA)?));
    interned.insert(TypeId::of::<T>(), schema);
    Ok(schema)
}

impl<T: AvroRecord + 'static> Codec<T> {
    /// A codec that writes the current schema and reads every known version.
    pub fn new() -> Result<Self> {
        static LIMIT: Once = Once::new();
        LIMIT.call_once(|| {
            apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        });

        let current = interned::<T>()?;
        let writer = GenericDatumWriter::builder(current)
            .build()
            .map_err(|e| Error::Encode(e.to_string()))?;
        let reader =
            GenericDatumReader::builder(current)
                .build()
                .map_err(|e| Error::InvalidSchema {
                    name: T::NAME,
                    reason: e.to_string(),
                })?;
        let current_fingerprint = fingerprint(current);
        let mut codec = Self {
            writer,
            reader,
            fingerprint: current_fingerprint,
            current_header: header(current_fingerprint),
            writers: HashMap::from([(current_fingerprint, current.clone())]),
            current,
            record: PhantomData,
        };
        for old in T::HISTORY {
            codec = codec.with_writer_schema(old)?;
        }
        Ok(codec)
    }

    /// Also accept payloads written with `schema` (an older or newer
    /// compatible version), resolved to the current schema on read.
    pub fn with_writer_schema(mut self, schema: &str) -> Result<Self> {
        let schema = parse::<T>(schema)?;
        self.writers.insert(fingerprint(&schema), schema);
        Ok(self)
    }

    /// The current schema's fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Encodes `record` with the current schema.
    pub fn encode(&self, record: &T) -> Result<Vec<u8>> {
        let mut payload = Vec::with_capacity(512);
        payload.extend_from_slice(&self.current_header);
        self.writer
            .write_ser(&mut payload, &Positional(record))
            .map_err(|e| Error::Encode(e.to_string()))?;
        Ok(payload)
    }

    /// Decodes a payload written with any registered schema version.
    pub fn decode(&self, payload: &[u8]) -> Result<T> {
        let (writer_fingerprint, mut body) = split_header(payload)?;
        let writer = self
            .writers
            .get(&writer_fingerprint)
            .ok_or(Error::UnknownSchema(writer_fingerprint))?;
        let corrupt = |e: apache_avro::Error| Error::CorruptBody(e.to_string());
        let record = if writer_fingerprint == self.fingerprint {
            // Same schema: deserialize straight from the bytes, no resolution.
            self.reader
                .read_deser::<Positional<T>>(&mut body)
                .map_err(corrupt)?
                .0
        } else {
            let value = GenericDatumReader::builder(writer)
                .reader_schema(self.current)
                .build()
                .map_err(corrupt)?
                .read_value(&mut body)
                .map_err(corrupt)?;
            from_value(&value).map_err(corrupt)?
        };
        if !body.is_empty() {
            return Err(Error::TrailingBytes(body.len()));
        }
        Ok(record)
    }
}

/// The writer schema's fingerprint and the Avro body of a single-object
/// payload, for readers of the body that do not go through a [`Codec`]
/// (the sink turns it into ClickHouse rows without decoding it).
pub fn split_header(payload: &[u8]) -> Result<(u64, &[u8])> {
    if payload.len() < HEADER_LEN {
        return Err(Error::Truncated(payload.len()));
    }
    let (header, body) = payload.split_at(HEADER_LEN);
    if header[..2] != MAGIC {
        return Err(Error::BadMagic);
    }
    let mut fingerprint_bytes = [0u8; 8];
    fingerprint_bytes.copy_from_slice(&header[2..]);
    Ok((u64::from_le_bytes(fingerprint_bytes), body))
}

/// Reads an Avro `long` (a zigzag varint of at most 10 bytes) off the front
/// of `body`. Errors are `CorruptBody` messages.
#[inline]
pub fn read_long(body: &mut &[u8]) -> std::result::Result<i64, String> {
    // Most longs of an event are string lengths, union branches and enum
    // indexes, one byte each; read per call, for every field of every
    // record the sink writes.
    if let Some((&byte, rest)) = body.split_first()
        && byte < 0x80
    {
        *body = rest;
        return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
    }
    read_long_slow(body)
}

/// [`read_long`] of a varint of more than one byte, or of none.
fn read_long_slow(body: &mut &[u8]) -> std::result::Result<i64, String> {
    let mut value = 0u64;
    for (i, &byte) in body.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            *body = &body[i + 1..];
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(if body.len() < 10 {
        "truncated varint".to_owned()
    } else {
        "varint longer than 10 bytes".to_owned()
    })
}

/// The `event_id` of a single-object payload of any Lumen event schema
/// (raw or enriched, any version: it is every event schema's first field,
/// which a test holds), without decoding the rest: the deduplication key,
/// read for every record. `None` if the payload does not start like one.
pub fn event_id(payload: &[u8]) -> Option<&str> {
    let (_, mut body) = split_header(payload).ok()?;
    let len = usize::try_from(read_long(&mut body).ok()?).ok()?;
    std::str::from_utf8(body.get(..len)?).ok()
}

fn parse<T: AvroRecord>(schema: &str) -> Result<Schema> {
    Schema::parse_str(schema).map_err(|e| Error::InvalidSchema {
        name: T::NAME,
        reason: e.to_string(),
    })
}

fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(fingerprint)
}

fn header(fingerprint: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..2].copy_from_slice(&MAGIC);
    header[2..].copy_from_slice(&fingerprint.to_le_bytes());
    header
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::events::{
        Attribution, Channel, Confidence, DeviceType, EventKind, ShareMethod, TokenStatus,
    };

    fn raw_share() -> RawEvent {
        RawEvent {
            event_id: "0192f0c1-7a2b-7cde-8f00-112233445566".into(),
            site_id: "daily-planet".into(),
            kind: EventKind::Share,
            received_at: 1_764_000_000_123,
            sent_at: Some(1_764_000_000_001),
            url: "https://dailyplanet.example/news/2026/eclipse".into(),
            referrer: None,
            user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)".into(),
            visitor_id: "9f86d081884c7d65".into(),
            minted_token: None,
            landing_token: None,
            webview: None,
            share_token: Some("AZx3kQ9_tT2b".into()),
            share_method: Some(ShareMethod::Button),
            share_target: Some("whatsapp".into()),
            parent_token: Some("AZx1aaaaaaaa".into()),
        }
    }

    fn enriched_visit() -> EnrichedEvent {
        let raw = raw_share();
        EnrichedEvent {
            event_id: raw.event_id,
            site_id: raw.site_id,
            kind: EventKind::Pageview,
            received_at: raw.received_at,
            sent_at: None,
            url: raw.url,
            referrer: Some("android-app://com.whatsapp/".into()),
            user_agent: raw.user_agent,
            visitor_id: raw.visitor_id,
            minted_token: Some("AZx4zzzzzzzz".into()),
            landing_token: Some("AZx3kQ9_tT2b".into()),
            webview: Some("telegram".into()),
            share_token: None,
            share_method: None,
            share_target: None,
            parent_token: None,
            channel: Channel::DarkSocial,
            channel_source: Some("whatsapp".into()),
            attribution: Attribution::Token,
            confidence: Confidence::Certain,
            rule: "token.private".into(),
            browser_family: "Mobile Safari".into(),
            browser_major: Some("18".into()),
            os_family: "iOS".into(),
            device_type: DeviceType::Mobile,
            in_app: Some("whatsapp".into()),
            is_bot: false,
            bot_name: None,
            preview_app: None,
            utm_source: None,
            utm_medium: Some("social".into()),
            utm_campaign: None,
            token_status: TokenStatus::Explicit,
            share_age_seconds: Some(3600),
            landing_share_method: Some(ShareMethod::Button),
            landing_share_target: Some("whatsapp".into()),
            landing_sharer_visitor_id: Some("abcdef".into()),
            landing_parent_token: None,
        }
    }

    #[test]
    fn raw_event_round_trips() {
        let codec = Codec::<RawEvent>::new().expect("codec");
        let event = raw_share();
        let payload = codec.encode(&event).expect("encode");
        assert_eq!(payload[..2], MAGIC);
        assert_eq!(payload[2..10], codec.fingerprint().to_le_bytes());
        assert_eq!(codec.decode(&payload).expect("decode"), event);
    }

    #[test]
    fn the_event_id_is_read_off_raw_and_enriched_payloads_alone() {
        let raw = Codec::<RawEvent>::new().expect("codec");
        let enriched = Codec::<EnrichedEvent>::new().expect("codec");
        let share = raw_share();
        let visit = enriched_visit();
        let raw_payload = raw.encode(&share).expect("encode");
        let enriched_payload = enriched.encode(&visit).expect("encode");
        assert_eq!(event_id(&raw_payload), Some(share.event_id.as_str()));
        assert_eq!(event_id(&enriched_payload), Some(visit.event_id.as_str()));
        let cut = HEADER_LEN + 1 + share.event_id.len() - 1;
        assert_eq!(event_id(&raw_payload[..cut]), None, "truncated id");
        assert_eq!(event_id(&raw_payload[1..]), None, "no header");
    }

    /// [`event_id`] reads the first field of whatever version wrote a
    /// payload.
    #[test]
    fn every_version_of_every_event_schema_starts_with_its_event_id() {
        fn first_field(schema: &str) -> (String, Schema) {
            match Schema::parse_str(schema).expect("schema") {
                Schema::Record(record) => {
                    let field = &record.fields[0];
                    (field.name.clone(), field.schema.clone())
                }
                other => panic!("not a record: {other:?}"),
            }
        }
        let versions = [RawEvent::SCHEMA, EnrichedEvent::SCHEMA]
            .into_iter()
            .chain(RawEvent::HISTORY.iter().copied())
            .chain(EnrichedEvent::HISTORY.iter().copied());
        for schema in versions {
            assert_eq!(first_field(schema), ("event_id".to_owned(), Schema::String));
        }
    }

    #[test]
    fn enriched_event_round_trips() {
        let codec = Codec::<EnrichedEvent>::new().expect("codec");
        let event = enriched_visit();
        let payload = codec.encode(&event).expect("encode");
        assert_eq!(codec.decode(&payload).expect("decode"), event);
    }

    fn share_record() -> ShareRecord {
        ShareRecord {
            token: "AZx3kQ9_tT2b".into(),
            site_id: "daily-planet".into(),
            event_id: "e1".into(),
            shared_at: 1_764_000_000_000,
            share_method: ShareMethod::Copy,
            share_target: None,
            parent_token: None,
            sharer_visitor_id: "v1".into(),
            url: "https://dailyplanet.example/a".into(),
        }
    }

    #[test]
    fn share_record_round_trips() {
        let codec = Codec::<ShareRecord>::new().expect("codec");
        let record = share_record();
        let payload = codec.encode(&record).expect("encode");
        assert_eq!(codec.decode(&payload).expect("decode"), record);
    }

    /// Writing and reading by position is a speed-up, never a format:
    /// the bytes must be those of apache-avro's by-name path.
    fn positional_matches_by_name<T>(record: &T)
    where
        T: AvroRecord + std::fmt::Debug + PartialEq + 'static,
    {
        let codec = Codec::<T>::new().expect("codec");
        let by_position = codec.encode(record).expect("encode");
        let mut by_name = codec.current_header.to_vec();
        codec
            .writer
            .write_ser(&mut by_name, record)
            .expect("by-name encode");
        assert_eq!(by_position, by_name, "{}", T::NAME);
        let read_by_name: T = codec
            .reader
            .read_deser(&mut &by_name[HEADER_LEN..])
            .expect("by-name decode");
        assert_eq!(codec.decode(&by_position).expect("decode"), read_by_name);
    }

    #[test]
    fn records_are_written_and_read_by_position_as_by_name() {
        positional_matches_by_name(&raw_share());
        positional_matches_by_name(&enriched_visit());
        positional_matches_by_name(&share_record());
    }

    /// The previous RawEvent version: no `webview` field. A reader on the
    /// current version (which added it as an optional field) must read it.
    fn raw_event_without_webview() -> String {
        let mut schema: serde_json::Value =
            serde_json::from_str(RawEvent::SCHEMA).expect("json schema");
        let fields = schema["fields"].as_array_mut().expect("fields");
        fields.retain(|field| field["name"] != "webview");
        schema.to_string()
    }

    #[test]
    fn old_writer_is_read_by_new_reader() {
        let old_schema = Schema::parse_str(&raw_event_without_webview()).expect("old schema");
        let mut old_event = raw_share();
        old_event.webview = None;
        let value = apache_avro::to_value(&old_event).expect("value");
        let apache_avro::types::Value::Record(mut fields) = value else {
            panic!("record expected");
        };
        fields.retain(|(name, _)| name != "webview");
        let body = GenericDatumWriter::builder(&old_schema)
            .build()
            .expect("old writer")
            .write_value_to_vec(apache_avro::types::Value::Record(fields))
            .expect("old body");
        let mut payload = header(fingerprint(&old_schema)).to_vec();
        payload.extend_from_slice(&body);

        let current_only = Codec::<RawEvent>::new().expect("codec");
        assert!(matches!(
            current_only.decode(&payload),
            Err(Error::UnknownSchema(_))
        ));

        let codec = Codec::<RawEvent>::new()
            .expect("codec")
            .with_writer_schema(&raw_event_without_webview())
            .expect("register old");
        let decoded = codec.decode(&payload).expect("decode old payload");
        assert_eq!(decoded, old_event);
        assert_eq!(decoded.webview, None);
    }

    #[test]
    fn typed_errors_for_bad_payloads() {
        let codec = Codec::<RawEvent>::new().expect("codec");
        let good = codec.encode(&raw_share()).expect("encode");

        assert!(matches!(codec.decode(&good[..5]), Err(Error::Truncated(5))));
        let mut bad_magic = good.clone();
        bad_magic[0] = 0x00;
        assert!(matches!(codec.decode(&bad_magic), Err(Error::BadMagic)));
        let mut unknown = good.clone();
        unknown[2] ^= 0xFF;
        assert!(matches!(
            codec.decode(&unknown),
            Err(Error::UnknownSchema(_))
        ));
        assert!(matches!(
            codec.decode(&good[..good.len() - 3]),
            Err(Error::CorruptBody(_))
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            codec.decode(&trailing),
            Err(Error::TrailingBytes(1))
        ));
    }

    #[test]
    fn partition_key_follows_the_token() {
        let share = raw_share();
        assert_eq!(share.partition_key(), "AZx3kQ9_tT2b");
        let mut view = share.clone();
        view.kind = EventKind::Pageview;
        view.landing_token = Some("landing".into());
        assert_eq!(view.partition_key(), "landing");
        view.landing_token = None;
        assert_eq!(view.partition_key(), "9f86d081884c7d65");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let codec = Codec::<EnrichedEvent>::new().expect("codec");
            let _ = codec.decode(&bytes);
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let codec = Codec::<RawEvent>::new().expect("codec");
            let mut payload = header(codec.fingerprint()).to_vec();
            payload.extend_from_slice(&body);
            let _ = codec.decode(&payload);
        }

        #[test]
        fn event_ids_of_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = event_id(&bytes);
        }

        #[test]
        fn mutated_payloads_never_panic(index in 0usize..400, byte in any::<u8>()) {
            let codec = Codec::<RawEvent>::new().expect("codec");
            let mut payload = codec.encode(&raw_share()).expect("encode");
            let at = index % payload.len();
            payload[at] = byte;
            let _ = codec.decode(&payload);
        }
    }
}
