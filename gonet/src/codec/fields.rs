//! serde helpers for the fields of generated messages: zero values left out as Go's
//! `omitempty` leaves them out, and `bytes` as base64 text in the text formats.
//!
//! Generated code names them through `gonet::codegen`; they are not a public API.

use std::cell::Cell;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde::Serialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};

thread_local! {
    /// Whether the XML codec is running: maps are written as entry lists, and a text
    /// value is read as text (an XML element reads as a map to `deserialize_any`).
    pub(crate) static XML_FORM: Cell<bool> = const { Cell::new(false) };
}

#[derive(serde::Serialize)]
struct EntryRef<'a, K, V> {
    key: &'a K,
    value: &'a V,
}

#[derive(serde::Deserialize)]
struct Entry<K, V> {
    key: K,
    value: V,
}

/// `serialize_with` of generated map fields: a map for JSON and binary, a list of
/// `key`/`value` entries for XML.
pub fn serialize_map<'a, M, K, V, S>(map: &'a M, serializer: S) -> Result<S::Ok, S::Error>
where
    M: Serialize,
    &'a M: IntoIterator<Item = (&'a K, &'a V)>,
    K: Serialize + 'a,
    V: Serialize + 'a,
    S: serde::Serializer,
{
    if XML_FORM.with(Cell::get) {
        serializer.collect_seq(map.into_iter().map(|(key, value)| EntryRef { key, value }))
    } else {
        map.serialize(serializer)
    }
}

/// `deserialize_with` of generated map fields, the reverse of [`serialize_map`].
pub fn deserialize_map<'de, M, K, V, D>(deserializer: D) -> Result<M, D::Error>
where
    M: serde::Deserialize<'de> + FromIterator<(K, V)>,
    K: serde::Deserialize<'de>,
    V: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    if XML_FORM.with(Cell::get) {
        let entries: Vec<Entry<K, V>> = serde::Deserialize::deserialize(deserializer)?;
        Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
    } else {
        M::deserialize(deserializer)
    }
}

/// `serialize_with` of generated map fields whose values are `bytes`: as
/// [`serialize_map`], each value base64 text in JSON and XML (raw bytes in binary formats).
pub fn serialize_bytes_map<'a, M, K, S>(map: &'a M, serializer: S) -> Result<S::Ok, S::Error>
where
    &'a M: IntoIterator<Item = (&'a K, &'a Vec<u8>)>,
    K: Serialize + 'a,
    S: serde::Serializer,
{
    #[derive(serde::Serialize)]
    struct BytesEntry<'a, K> {
        key: &'a K,
        value: One<'a>,
    }
    if XML_FORM.with(Cell::get) {
        serializer.collect_seq(map.into_iter().map(|(key, value)| BytesEntry {
            key,
            value: One(value),
        }))
    } else {
        serializer.collect_map(map.into_iter().map(|(key, value)| (key, One(value))))
    }
}

/// `deserialize_with` of generated map fields whose values are `bytes`, the reverse of
/// [`serialize_bytes_map`].
pub fn deserialize_bytes_map<'de, M, K, D>(deserializer: D) -> Result<M, D::Error>
where
    M: FromIterator<(K, Vec<u8>)>,
    K: serde::Deserialize<'de> + Ord,
    D: serde::Deserializer<'de>,
{
    if XML_FORM.with(Cell::get) {
        let entries: Vec<Entry<K, OneOwned>> = serde::Deserialize::deserialize(deserializer)?;
        Ok(entries.into_iter().map(|e| (e.key, e.value.0)).collect())
    } else {
        let map: std::collections::BTreeMap<K, OneOwned> =
            serde::Deserialize::deserialize(deserializer)?;
        Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

/// Values that proto3 does not write when they are zero.
pub trait IsZero {
    /// Whether the value is its type's zero (`0`, `false`, `""`, empty bytes).
    fn is_zero(&self) -> bool;
}

macro_rules! int_zero {
    ($($t:ty),*) => {$(
        impl IsZero for $t {
            #[inline]
            fn is_zero(&self) -> bool {
                *self == 0
            }
        }
    )*};
}
int_zero!(i32, i64, u32, u64);

impl IsZero for f32 {
    /// Positive zero only: `-0.0` is written, so it reads back as itself.
    #[inline]
    fn is_zero(&self) -> bool {
        self.to_bits() == 0
    }
}

impl IsZero for f64 {
    /// Positive zero only: `-0.0` is written, so it reads back as itself.
    #[inline]
    fn is_zero(&self) -> bool {
        self.to_bits() == 0
    }
}

impl IsZero for bool {
    #[inline]
    fn is_zero(&self) -> bool {
        !*self
    }
}

impl IsZero for String {
    #[inline]
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl IsZero for Vec<u8> {
    #[inline]
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl IsZero for bytes::Bytes {
    #[inline]
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

/// `skip_serializing_if` of generated singular fields: a zero value is left out, and
/// `#[serde(default)]` brings it back.
#[inline]
pub fn is_zero<T: IsZero>(value: &T) -> bool {
    value.is_zero()
}

/// Standard base64 with `=` padding on output; with or without it on input.
const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// The URL-safe alphabet, which the proto3 JSON mapping also accepts.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn serialize_one<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.collect_str(&general_purpose::STANDARD.encode(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

fn decode_text<E: de::Error>(text: &str) -> Result<Vec<u8>, E> {
    let engine = if text.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    engine
        .decode(text)
        .map_err(|e| E::custom(format_args!("bytes field is not base64: {e}")))
}

/// Reads a `bytes` value: base64 text, a byte string, or a list of numbers (the form of
/// earlier gonet-rs versions and of jsoniter).
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 text or bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        decode_text(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

fn deserialize_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    if XML_FORM.with(Cell::get) {
        deserializer.deserialize_str(BytesVisitor)
    } else if deserializer.is_human_readable() {
        deserializer.deserialize_any(BytesVisitor)
    } else {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// A `bytes` field: base64 text in JSON and XML, raw bytes in binary formats.
pub mod base64_bytes {
    use super::*;

    /// Writes the bytes.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serialize_one(bytes, serializer)
    }

    /// Reads the bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserialize_one(deserializer)
    }
}

/// An `optional bytes` field, like [`base64_bytes`].
pub mod base64_option {
    use super::*;

    /// Writes the bytes, or nothing.
    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => serializer.serialize_some(&One(bytes)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads the bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<OneOwned>::deserialize(deserializer)?.map(|b| b.0))
    }

    use serde::Deserialize;
}

/// A `repeated bytes` field, like [`base64_bytes`] for each element.
pub mod base64_list {
    use super::*;

    /// Writes the list.
    pub fn serialize<S: Serializer>(list: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(list.len()))?;
        for bytes in list {
            seq.serialize_element(&One(bytes))?;
        }
        seq.end()
    }

    /// Reads the list.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<OneOwned>::deserialize(deserializer)?
            .into_iter()
            .map(|b| b.0)
            .collect())
    }

    use serde::Deserialize;
}

/// One `bytes` value to write.
struct One<'a>(&'a [u8]);

impl serde::Serialize for One<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_one(self.0, serializer)
    }
}

/// One `bytes` value read.
struct OneOwned(Vec<u8>);

impl<'de> serde::Deserialize<'de> for OneOwned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_one(deserializer).map(OneOwned)
    }
}

/// A `google.protobuf.Empty` field, held as `Option<()>`: an empty map when present
/// (`{}` in JSON, as every JSON mapping writes it), left out when absent.
pub mod empty {
    use super::*;
    use serde::ser::SerializeMap;

    /// Writes `{}`, or nothing.
    pub fn serialize<S: Serializer>(value: &Option<()>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(()) => serializer.serialize_some(&EmptyMap),
            None => serializer.serialize_none(),
        }
    }

    /// Reads any map (its entries skipped) as present.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<()>, D::Error> {
        Ok(Option::<serde::de::IgnoredAny>::deserialize(deserializer)?.map(|_| ()))
    }

    struct EmptyMap;

    impl serde::Serialize for EmptyMap {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_map(Some(0))?.end()
        }
    }

    use serde::Deserialize;
}

/// Fields that hold a well-known type of `prost_types`, which has no serde impls: each
/// value is written and read as `M`, a copy of the type generated with serde derives
/// (the same protobuf encoding, so a value passes between the two through it).
#[cfg(feature = "protobuf")]
pub mod wkt {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    fn convert<A: prost::Message, B: prost::Message + Default>(a: &A) -> Result<B, String> {
        B::decode(a.encode_to_vec().as_slice()).map_err(|e| e.to_string())
    }

    fn to<M: prost::Message + Default, P: prost::Message, E: serde::ser::Error>(
        p: &P,
    ) -> Result<M, E> {
        convert(p).map_err(E::custom)
    }

    fn from<P: prost::Message + Default, M: prost::Message, E: serde::de::Error>(
        m: &M,
    ) -> Result<P, E> {
        convert(m).map_err(E::custom)
    }

    /// Writes an `Option<P>`.
    pub fn option_ser<M, P, S>(value: &Option<P>, serializer: S) -> Result<S::Ok, S::Error>
    where
        M: prost::Message + Default + Serialize,
        P: prost::Message,
        S: Serializer,
    {
        match value {
            Some(p) => serializer.serialize_some(&to::<M, P, S::Error>(p)?),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an `Option<P>`.
    pub fn option_de<'de, M, P, D>(deserializer: D) -> Result<Option<P>, D::Error>
    where
        M: prost::Message + Default + Deserialize<'de>,
        P: prost::Message + Default,
        D: Deserializer<'de>,
    {
        Option::<M>::deserialize(deserializer)?
            .map(|m| from(&m))
            .transpose()
    }

    /// Writes a oneof member's `P`.
    pub fn one_ser<M, P, S>(value: &P, serializer: S) -> Result<S::Ok, S::Error>
    where
        M: prost::Message + Default + Serialize,
        P: prost::Message,
        S: Serializer,
    {
        to::<M, P, S::Error>(value)?.serialize(serializer)
    }

    /// Reads a oneof member's `P`.
    pub fn one_de<'de, M, P, D>(deserializer: D) -> Result<P, D::Error>
    where
        M: prost::Message + Default + Deserialize<'de>,
        P: prost::Message + Default,
        D: Deserializer<'de>,
    {
        from(&M::deserialize(deserializer)?)
    }

    /// Writes a `Vec<P>`.
    pub fn list_ser<M, P, S>(value: &[P], serializer: S) -> Result<S::Ok, S::Error>
    where
        M: prost::Message + Default + Serialize,
        P: prost::Message,
        S: Serializer,
    {
        let list = value
            .iter()
            .map(to::<M, P, S::Error>)
            .collect::<Result<Vec<M>, _>>()?;
        serializer.collect_seq(&list)
    }

    /// Reads a `Vec<P>`.
    pub fn list_de<'de, M, P, D>(deserializer: D) -> Result<Vec<P>, D::Error>
    where
        M: prost::Message + Default + Deserialize<'de>,
        P: prost::Message + Default,
        D: Deserializer<'de>,
    {
        Vec::<M>::deserialize(deserializer)?
            .iter()
            .map(from)
            .collect()
    }

    /// Writes a map of `P` values (as entries in XML, like every map).
    pub fn map_ser<M, K, P, S>(value: &HashMap<K, P>, serializer: S) -> Result<S::Ok, S::Error>
    where
        M: prost::Message + Default + Serialize,
        K: Serialize + Eq + Hash + Clone,
        P: prost::Message,
        S: Serializer,
    {
        let map = value
            .iter()
            .map(|(k, p)| Ok((k.clone(), to::<M, P, S::Error>(p)?)))
            .collect::<Result<HashMap<K, M>, S::Error>>()?;
        super::serialize_map(&map, serializer)
    }

    /// Reads a map of `P` values.
    pub fn map_de<'de, M, K, P, D>(deserializer: D) -> Result<HashMap<K, P>, D::Error>
    where
        M: prost::Message + Default + Deserialize<'de>,
        K: Deserialize<'de> + Eq + Hash,
        P: prost::Message + Default,
        D: Deserializer<'de>,
    {
        let map: HashMap<K, M> = super::deserialize_map(deserializer)?;
        map.into_iter().map(|(k, m)| Ok((k, from(&m)?))).collect()
    }
}

#[cfg(all(test, feature = "json"))]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Default)]
    #[serde(default)]
    struct B {
        #[serde(with = "base64_bytes", skip_serializing_if = "is_zero")]
        one: Vec<u8>,
        #[serde(with = "base64_option")]
        maybe: Option<Vec<u8>>,
        #[serde(with = "base64_list")]
        many: Vec<Vec<u8>>,
    }

    #[test]
    fn bytes_are_base64_text_and_read_in_every_spelling() {
        let b = B {
            one: vec![0, 0xff, 0x10],
            maybe: Some(vec![0xfb]),
            many: vec![vec![], vec![0xff, 0xfe]],
        };
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(text, r#"{"one":"AP8Q","maybe":"+w==","many":["","//4="]}"#);
        assert_eq!(serde_json::from_str::<B>(&text).unwrap(), b);
        let other = r#"{"one":[0,255,16],"maybe":"-w","many":["","__4"]}"#;
        assert_eq!(serde_json::from_str::<B>(other).unwrap(), b);
        let err = serde_json::from_str::<B>(r#"{"one":"not base64!"}"#).unwrap_err();
        assert!(
            err.to_string().contains("bytes field is not base64"),
            "{err}"
        );
        assert!(is_zero(&0.0f64) && !is_zero(&-0.0f64) && is_zero(&String::new()));
    }
}
