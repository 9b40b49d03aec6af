//! Serdes: how typed keys and values become bytes at the boundaries, and back.
//!
//! Encodings are stable on disk (changelogs, stores and topics outlive a process). Integers
//! are big-endian so byte order equals numeric order; signed integers also flip the sign bit,
//! so negative numbers sort before positive ones in a byte-ordered store.

use std::marker::PhantomData;

use crate::error::SerdeError;

/// Turns values of `T` into bytes and back.
///
/// Implementations must be deterministic: equal values give equal bytes (stores and
/// compaction compare keys as bytes).
pub trait Serde<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    ///
    /// Fails only when the value cannot be represented in this format (a JSON map with
    /// non-string keys, say); on failure `out` may hold a partial encoding.
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;

    /// Decodes a value from exactly `bytes`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;

    /// What a null key or value (absent bytes) decodes to. `None`, the default, means the type
    /// has no null: sources then drop such records and count them.
    fn null_value(&self) -> Option<T> {
        None
    }

    /// Whether `value` is written as null (no bytes) rather than encoded.
    fn is_null(&self, _value: &T) -> bool {
        false
    }

    /// The part of an encoded key that picks its partition under the default partitioner
    /// (murmur2 of these bytes): all of it, except in serdes of keys that wrap another key. A
    /// windowed key is partitioned by the key inside it, as by Kafka Streams' windowed
    /// partitioner, so every window of a key lands on the partition of the key.
    fn partition_bytes<'a>(&self, encoded: &'a [u8]) -> &'a [u8] {
        encoded
    }

    /// Decodes bytes that may be absent (a null key or a tombstone). `Ok(None)`: they are
    /// absent and the type has no null.
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        match bytes {
            Some(b) => self.deserialize(b).map(Some),
            None => Ok(self.null_value()),
        }
    }

    /// Encodes `value`, or `None` when it is written as null.
    fn serialize_nullable(&self, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        if self.is_null(value) {
            Ok(None)
        } else {
            self.serialize(value).map(Some)
        }
    }

    /// The encoding of `value` as a new vector.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        let mut out = Vec::new();
        self.serialize_into(value, &mut out)?;
        Ok(out)
    }
}

/// UTF-8 strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize_into(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| SerdeError::new("String", e.to_string()))
    }
}

/// Raw bytes, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize_into(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
}

/// The unit value, as zero bytes (for streams whose key or value carries no information).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

/// Unit is written as null, so `()` is the key type of unkeyed streams.
impl Serde<()> for UnitSerde {
    fn serialize_into(&self, _value: &(), _out: &mut Vec<u8>) -> Result<(), SerdeError> {
        Ok(())
    }

    fn null_value(&self) -> Option<()> {
        Some(())
    }

    fn is_null(&self, _value: &()) -> bool {
        true
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<(), SerdeError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(SerdeError::new(
                "()",
                format!("expected 0 bytes, got {}", bytes.len()),
            ))
        }
    }
}

macro_rules! unsigned_serde {
    ($name:ident, $t:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serde<$t> for $name {
            fn serialize_into(&self, value: &$t, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }

            fn deserialize(&self, bytes: &[u8]) -> Result<$t, SerdeError> {
                let arr: [u8; std::mem::size_of::<$t>()] = bytes.try_into().map_err(|_| {
                    SerdeError::new(
                        stringify!($t),
                        format!(
                            "expected {} bytes, got {}",
                            std::mem::size_of::<$t>(),
                            bytes.len()
                        ),
                    )
                })?;
                Ok(<$t>::from_be_bytes(arr))
            }
        }
    };
}

macro_rules! signed_serde {
    ($name:ident, $t:ty, $u:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl $name {
            const FLIP: $u = 1 << (<$u>::BITS - 1);
        }

        impl Serde<$t> for $name {
            fn serialize_into(&self, value: &$t, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                let flipped = (*value as $u) ^ Self::FLIP;
                out.extend_from_slice(&flipped.to_be_bytes());
                Ok(())
            }

            fn deserialize(&self, bytes: &[u8]) -> Result<$t, SerdeError> {
                let arr: [u8; std::mem::size_of::<$t>()] = bytes.try_into().map_err(|_| {
                    SerdeError::new(
                        stringify!($t),
                        format!(
                            "expected {} bytes, got {}",
                            std::mem::size_of::<$t>(),
                            bytes.len()
                        ),
                    )
                })?;
                Ok((<$u>::from_be_bytes(arr) ^ Self::FLIP) as $t)
            }
        }
    };
}

unsigned_serde!(U32Serde, u32, "`u32`, 4 bytes big-endian.");
unsigned_serde!(U64Serde, u64, "`u64`, 8 bytes big-endian.");
signed_serde!(
    I32Serde,
    i32,
    u32,
    "`i32`, 4 bytes big-endian with the sign bit flipped."
);
signed_serde!(
    I64Serde,
    i64,
    u64,
    "`i64`, 8 bytes big-endian with the sign bit flipped."
);

/// `Option<T>` over a serde for `T`: `None` is a null key or value (a tombstone).
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionSerde<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for OptionSerde<S> {
    fn serialize_into(&self, value: &Option<T>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(v) => self.0.serialize_into(v, out),
            None => Ok(()),
        }
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }

    fn null_value(&self) -> Option<Option<T>> {
        Some(None)
    }

    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }

    fn partition_bytes<'a>(&self, encoded: &'a [u8]) -> &'a [u8] {
        self.0.partition_bytes(encoded)
    }
}

/// A shared serde is a serde.
impl<T: 'static> Serde<T> for std::sync::Arc<dyn Serde<T>> {
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        (**self).serialize_into(value, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }

    fn null_value(&self) -> Option<T> {
        (**self).null_value()
    }

    fn partition_bytes<'a>(&self, encoded: &'a [u8]) -> &'a [u8] {
        (**self).partition_bytes(encoded)
    }

    fn is_null(&self, value: &T) -> bool {
        (**self).is_null(value)
    }
}

/// Types with an obvious serde, used when the DSL is not given one.
pub trait DefaultSerde: Sized + 'static {
    /// The serde for this type.
    fn default_serde() -> std::sync::Arc<dyn Serde<Self>>;
}

macro_rules! default_serde {
    ($t:ty, $s:expr) => {
        impl DefaultSerde for $t {
            fn default_serde() -> std::sync::Arc<dyn Serde<Self>> {
                std::sync::Arc::new($s)
            }
        }
    };
}

default_serde!(String, StringSerde);
default_serde!(Vec<u8>, BytesSerde);
default_serde!((), UnitSerde);
default_serde!(u32, U32Serde);
default_serde!(u64, U64Serde);
default_serde!(i32, I32Serde);
default_serde!(i64, I64Serde);

impl<T: DefaultSerde> DefaultSerde for Option<T> {
    fn default_serde() -> std::sync::Arc<dyn Serde<Self>> {
        std::sync::Arc::new(OptionSerde(T::default_serde()))
    }
}

/// A serde for any `serde` type through one format: a zero-sized struct with the impls every
/// such serde shares (`new`, `Default`, `Clone`, `Debug`); the `Serde` impl is the format's own.
macro_rules! format_serde {
    ($(#[$doc:meta])* $name:ident, $new_doc:literal) => {
        $(#[$doc])*
        pub struct $name<T>(PhantomData<fn() -> T>);

        impl<T> $name<T> {
            #[doc = $new_doc]
            pub fn new() -> Self {
                $name(PhantomData)
            }
        }

        impl<T> Default for $name<T> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                Self::new()
            }
        }

        impl<T> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}

format_serde!(
    /// Any `serde` type through bincode (standard configuration: little-endian varints).
    ///
    /// Compact and fast, but its byte order is not the value order: use it for values, or for
    /// keys that are only looked up, never range-scanned.
    BincodeSerde,
    "A bincode serde for `T`."
);

impl<T> Serde<T> for BincodeSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        // Writing into a Vec cannot fail for I/O reasons: an error means the type's own
        // Serialize impl refused.
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| SerdeError::new("bincode", e.to_string()))
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        let (value, used) =
            bincode::serde::decode_from_slice::<T, _>(bytes, bincode::config::standard())
                .map_err(|e| SerdeError::new("bincode", e.to_string()))?;
        if used != bytes.len() {
            return Err(SerdeError::new(
                "bincode",
                format!("{} trailing bytes after the value", bytes.len() - used),
            ));
        }
        Ok(value)
    }
}

format_serde!(
    /// Any `serde` type as JSON text.
    JsonSerde,
    "A JSON serde for `T`."
);

impl<T> Serde<T> for JsonSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(&mut *out, value).map_err(|e| SerdeError::new("json", e.to_string()))
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|e| SerdeError::new("json", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn string_round_trip_and_bad_utf8() {
        let s = StringSerde;
        assert_eq!(
            s.deserialize(&s.serialize(&"héllo".to_string()).unwrap())
                .unwrap(),
            "héllo"
        );
        let err = s.deserialize(&[0xff, 0xfe]).unwrap_err();
        assert_eq!(err.what, "String");
    }

    #[test]
    fn integer_lengths_are_checked() {
        let err = U64Serde.deserialize(&[1, 2, 3]).unwrap_err();
        assert!(err.reason.contains("expected 8 bytes, got 3"), "{err}");
        assert!(I32Serde.deserialize(&[0; 5]).is_err());
    }

    #[test]
    fn known_encodings() {
        assert_eq!(U32Serde.serialize(&1).unwrap(), vec![0, 0, 0, 1]);
        assert_eq!(I32Serde.serialize(&0).unwrap(), vec![0x80, 0, 0, 0]);
        assert_eq!(
            I32Serde.serialize(&-1).unwrap(),
            vec![0x7f, 0xff, 0xff, 0xff]
        );
        assert_eq!(I64Serde.serialize(&i64::MIN).unwrap(), vec![0; 8]);
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Payment {
        id: String,
        amount: i64,
        currency: Option<String>,
    }

    #[test]
    fn serde_types_round_trip() {
        let p = Payment {
            id: "p1".into(),
            amount: -42,
            currency: Some("EUR".into()),
        };
        let b = BincodeSerde::<Payment>::new();
        assert_eq!(b.deserialize(&b.serialize(&p).unwrap()).unwrap(), p);
        let j = JsonSerde::<Payment>::new();
        let bytes = j.serialize(&p).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"id":"p1","amount":-42,"currency":"EUR"}"#
        );
        assert_eq!(j.deserialize(&bytes).unwrap(), p);
        assert!(j.deserialize(b"{not json").is_err());
        let mut extra = b.serialize(&p).unwrap();
        extra.push(0);
        assert!(b
            .deserialize(&extra)
            .unwrap_err()
            .reason
            .contains("trailing"));
    }

    #[test]
    fn nulls() {
        assert_eq!(StringSerde.null_value(), None);
        assert!(!StringSerde.is_null(&String::new()));
        assert_eq!(UnitSerde.null_value(), Some(()));
        let o = OptionSerde(U32Serde);
        assert_eq!(o.null_value(), Some(None));
        assert!(o.is_null(&None));
        assert_eq!(
            o.deserialize(&o.serialize(&Some(7)).unwrap()).unwrap(),
            Some(7)
        );
    }

    #[test]
    fn decode_error_names_its_record() {
        let err = StringSerde.deserialize(&[0xff]).unwrap_err().at(
            "payments",
            3,
            17,
            crate::error::RecordPart::Value,
        );
        let text = err.to_string();
        assert!(text.contains("payments-3@17"), "{text}");
        assert!(text.contains("value"), "{text}");
    }

    proptest! {
        #[test]
        fn signed_order_is_byte_order(a: i64, b: i64) {
            let (ea, eb) = (I64Serde.serialize(&a).unwrap(), I64Serde.serialize(&b).unwrap());
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            prop_assert_eq!(I64Serde.deserialize(&ea).unwrap(), a);
        }

        #[test]
        fn i32_order_is_byte_order(a: i32, b: i32) {
            let (ea, eb) = (I32Serde.serialize(&a).unwrap(), I32Serde.serialize(&b).unwrap());
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            prop_assert_eq!(I32Serde.deserialize(&eb).unwrap(), b);
        }

        #[test]
        fn unsigned_order_is_byte_order(a: u64, b: u64) {
            let (ea, eb) = (U64Serde.serialize(&a).unwrap(), U64Serde.serialize(&b).unwrap());
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            prop_assert_eq!(U64Serde.deserialize(&ea).unwrap(), a);
        }
    }
}
