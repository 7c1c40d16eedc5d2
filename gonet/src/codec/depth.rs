//! A nesting limit for serde decoders that have none of their own that is safe.
//!
//! A derived `Deserialize` of a recursive type (a tree, a message that contains itself)
//! recurses once per level of the input, and a stack overflow aborts the whole process:
//! `catch_unwind` cannot catch it. quick-xml has no limit at all; rmp-serde stops at
//! 1,024 levels, deeper than a debug build's 2 MiB worker stack holds. [`Limited`] wraps a
//! deserializer and counts the containers (sequences, maps, enums, options, newtypes)
//! it enters on the way down; one level past [`MAX_NESTING`] fails with a custom error
//! instead of recursing further.
//!
//! The counting costs a compare per container and nothing per scalar. Every nested
//! value a derived `Deserialize` asks for passes through a seed, a `visit_some` or a
//! `visit_newtype_struct`, so no path down escapes the count.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess};
use serde::de::{VariantAccess, Visitor};

#[cfg(any(feature = "xml", feature = "binary"))]
use super::MAX_NESTING;

/// The levels left and the flag that records that the limit was hit (so that the error
/// is told apart from the decoder's own).
#[derive(Clone, Copy)]
struct Depth<'a> {
    left: usize,
    hit: &'a Cell<bool>,
    /// How many values were skipped (`deserialize_ignored_any`): a derived
    /// `Deserialize` skips the value of a key that matches no field.
    ignored: &'a Cell<usize>,
}

impl Depth<'_> {
    /// One level further down, or the error when there is no level left.
    #[inline]
    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Depth { left, ..self }),
            None => {
                self.hit.set(true);
                Err(E::custom("nesting too deep"))
            }
        }
    }
}

/// Decodes `T` from `de` with at most [`MAX_NESTING`] levels. `Err(None)` when the limit
/// was hit, `Err(Some(e))` for any other error of the decoder.
#[cfg(any(feature = "xml", feature = "binary"))]
pub(crate) fn decode<'de, T, D>(de: D) -> Result<T, Option<D::Error>>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    decode_limited(de, MAX_NESTING).map(|(value, _)| value)
}

/// Decodes `T` from `de` with at most `limit` levels, and says whether any value was
/// skipped (nonzero: at least one key matched no field). Errors as for [`decode`].
pub(crate) fn decode_limited<'de, T, D>(de: D, limit: usize) -> Result<(T, usize), Option<D::Error>>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    let hit = Cell::new(false);
    let ignored = Cell::new(0);
    let limited = Limited {
        inner: de,
        depth: Depth {
            left: limit,
            hit: &hit,
            ignored: &ignored,
        },
    };
    match T::deserialize(limited) {
        Ok(value) => Ok((value, ignored.get())),
        Err(e) => Err(if hit.get() { None } else { Some(e) }),
    }
}

/// A deserializer that counts the levels below it.
struct Limited<'a, D> {
    inner: D,
    depth: Depth<'a>,
}

/// A visitor, seed or access whose nested values are counted.
struct Wrap<'a, T> {
    inner: T,
    depth: Depth<'a>,
}

impl<'a, T> Wrap<'a, T> {
    #[inline]
    fn new(inner: T, depth: Depth<'a>) -> Self {
        Wrap { inner, depth }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?;)*) => {
        $(
            #[inline]
            fn $method<V: Visitor<'de>>(self $($(, $arg: $ty)*)?, visitor: V) -> Result<V::Value, Self::Error> {
                self.inner.$method($($($arg,)*)? Wrap::new(visitor, self.depth))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any; deserialize_bool; deserialize_i8; deserialize_i16; deserialize_i32;
        deserialize_i64; deserialize_i128; deserialize_u8; deserialize_u16; deserialize_u32;
        deserialize_u64; deserialize_u128; deserialize_f32; deserialize_f64; deserialize_char;
        deserialize_str; deserialize_string; deserialize_bytes; deserialize_byte_buf;
        deserialize_option; deserialize_unit; deserialize_seq; deserialize_map;
        deserialize_identifier;
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }

    #[inline]
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.depth.ignored.set(self.depth.ignored.get() + 1);
        self.inner
            .deserialize_ignored_any(Wrap::new(visitor, self.depth))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            #[inline]
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char);
        visit_str(&str); visit_borrowed_str(&'de str); visit_string(String);
        visit_bytes(&[u8]); visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        let depth = self.depth.deeper()?;
        self.inner.visit_some(Limited { inner, depth })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        let depth = self.depth.deeper()?;
        self.inner.visit_newtype_struct(Limited { inner, depth })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth.deeper()?;
        self.inner.visit_seq(Wrap::new(seq, depth))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth.deeper()?;
        self.inner.visit_map(Wrap::new(map, depth))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth.deeper()?;
        self.inner.visit_enum(Wrap::new(data, depth))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        self.inner.deserialize(Limited {
            inner,
            depth: self.depth,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.inner.next_element_seed(Wrap::new(seed, self.depth))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        self.inner.next_key_seed(Wrap::new(seed, self.depth))
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.next_value_seed(Wrap::new(seed, self.depth))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'a, A> {
    type Error = A::Error;
    type Variant = Wrap<'a, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let depth = self.depth;
        let (value, variant) = self.inner.variant_seed(Wrap::new(seed, depth))?;
        Ok((value, Wrap::new(variant, depth)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        // A newtype variant can recurse without consuming input (a decoder that hands
        // the same element down again): it counts as a level of its own.
        let depth = self.depth.deeper()?;
        self.inner.newtype_variant_seed(Wrap::new(seed, depth))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner
            .tuple_variant(len, Wrap::new(visitor, self.depth))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner
            .struct_variant(fields, Wrap::new(visitor, self.depth))
    }
}

#[cfg(all(test, feature = "xml"))]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Tree {
        #[serde(default)]
        children: Vec<Tree>,
    }

    /// A tree `levels` elements deep: each element is two containers, the struct and
    /// the list of its children.
    fn nested(levels: usize) -> String {
        let mut s = String::from("<Tree>");
        for _ in 1..levels {
            s.push_str("<children>");
        }
        for _ in 1..levels {
            s.push_str("</children>");
        }
        s.push_str("</Tree>");
        s
    }

    fn decode_xml(text: &str) -> Result<Tree, Option<quick_xml::DeError>> {
        decode(&mut quick_xml::de::Deserializer::from_str(text))
    }

    #[test]
    fn counts_every_container_and_stops_one_past_the_limit() {
        let mut tree = decode_xml(&nested(MAX_NESTING / 2)).expect("the limit decodes");
        let mut levels = 1;
        while let Some(child) = tree.children.pop() {
            tree = child;
            levels += 1;
        }
        assert_eq!(levels, MAX_NESTING / 2);
        match decode_xml(&nested(MAX_NESTING / 2 + 1)) {
            Err(None) => {}
            other => panic!("expected the nesting limit, got {other:?}"),
        }
    }

    #[test]
    fn other_errors_are_the_decoders_own() {
        match decode_xml("<Tree><children>") {
            Err(Some(_)) => {}
            other => panic!("expected quick-xml's error, got {other:?}"),
        }
    }
}
