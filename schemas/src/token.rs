//! The share token of `share-token.md`: 12 bytes (minting minute, 56 random
//! bits, a check byte) as 16 base64url characters. The tracker mints tokens
//! in JavaScript; this is the Rust side, for enrich (share age, validity)
//! and the traffic generator.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Characters in an encoded token.
pub const TOKEN_LEN: usize = 16;
const BYTES: usize = 12;
const CHECK_MASK: u8 = 0xA5;
/// How far in the future of an event a minting minute may lie (client clocks
/// drift) before the token counts as forged.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// Why a string is not a share token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not 16 characters.
    #[error("a share token has 16 characters")]
    Length,
    /// Not base64url.
    #[error("a share token is base64url")]
    Alphabet,
    /// The check byte does not match.
    #[error("share token check byte mismatch")]
    Check,
    /// Minted more than [`MAX_CLOCK_SKEW_MS`] after the event that carries it.
    #[error("share token minted in the future")]
    Future,
}

impl TokenError {
    /// A bounded label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Alphabet => "alphabet",
            Self::Check => "check",
            Self::Future => "future",
        }
    }
}

/// A decoded share token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShareToken {
    minute: u32,
    random: [u8; 7],
}

impl ShareToken {
    /// A token minted at `minted_at_ms` (Unix ms, truncated to the minute).
    pub fn new(minted_at_ms: i64, random: [u8; 7]) -> Self {
        let minute = u32::try_from(minted_at_ms.max(0) / 60_000).unwrap_or(u32::MAX);
        Self { minute, random }
    }

    /// Parses the 16-character form, checking length, alphabet and check byte.
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        if token.len() != TOKEN_LEN {
            return Err(TokenError::Length);
        }
        let mut bytes = [0u8; BYTES];
        let written = URL_SAFE_NO_PAD
            .decode_slice(token, &mut bytes)
            .map_err(|_| TokenError::Alphabet)?;
        if written != BYTES {
            return Err(TokenError::Length);
        }
        if check_byte(&bytes[..BYTES - 1]) != bytes[BYTES - 1] {
            return Err(TokenError::Check);
        }
        let mut random = [0u8; 7];
        random.copy_from_slice(&bytes[4..11]);
        Ok(Self {
            minute: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            random,
        })
    }

    /// Parses a token carried by an event received at `received_at_ms`,
    /// refusing one minted implausibly far in the future.
    pub fn parse_at(token: &str, received_at_ms: i64) -> Result<Self, TokenError> {
        let parsed = Self::parse(token)?;
        if parsed.minted_at_ms() - received_at_ms > MAX_CLOCK_SKEW_MS {
            return Err(TokenError::Future);
        }
        Ok(parsed)
    }

    /// The 16-character form.
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; BYTES];
        bytes[..4].copy_from_slice(&self.minute.to_be_bytes());
        bytes[4..11].copy_from_slice(&self.random);
        bytes[11] = check_byte(&bytes[..11]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Start of the minting minute, Unix ms.
    pub fn minted_at_ms(&self) -> i64 {
        i64::from(self.minute) * 60_000
    }

    /// Seconds from minting to `at_ms`, never negative.
    pub fn age_seconds(&self, at_ms: i64) -> i64 {
        ((at_ms - self.minted_at_ms()) / 1000).max(0)
    }
}

fn check_byte(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) ^ CHECK_MASK
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    const VECTOR: &str = "AcB3bAEjRWeJq83Q";
    const VECTOR_MINTED_MS: i64 = 1_763_442_000_000;

    #[test]
    fn decodes_the_documented_vector() {
        let token = ShareToken::parse(VECTOR).expect("valid vector");
        assert_eq!(token.minted_at_ms(), VECTOR_MINTED_MS);
        assert_eq!(
            ShareToken::new(
                VECTOR_MINTED_MS + 59_999,
                [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd]
            )
            .encode(),
            VECTOR
        );
    }

    #[rstest]
    #[case("AcB3bAEjRWeJq83R", TokenError::Check)]
    #[case("AcB3bAEjRWeJq83", TokenError::Length)]
    #[case("AcB3bAEjRWeJq8+Q", TokenError::Alphabet)]
    #[case("", TokenError::Length)]
    #[case("ÄcB3bAEjRWeJq8Q", TokenError::Alphabet)]
    fn rejects_the_documented_bad_vectors(#[case] token: &str, #[case] error: TokenError) {
        assert_eq!(ShareToken::parse(token), Err(error));
    }

    #[test]
    fn refuses_tokens_minted_in_the_future() {
        let received = VECTOR_MINTED_MS - MAX_CLOCK_SKEW_MS - 60_000;
        assert_eq!(
            ShareToken::parse_at(VECTOR, received),
            Err(TokenError::Future)
        );
        let token = ShareToken::parse_at(VECTOR, VECTOR_MINTED_MS + 90_000).expect("valid");
        assert_eq!(token.age_seconds(VECTOR_MINTED_MS + 90_000), 90);
    }

    proptest! {
        #[test]
        fn round_trips(minute in 0u32..u32::MAX, random in any::<[u8; 7]>()) {
            let token = ShareToken::new(i64::from(minute) * 60_000, random);
            let encoded = token.encode();
            prop_assert_eq!(encoded.len(), TOKEN_LEN);
            prop_assert_eq!(ShareToken::parse(&encoded), Ok(token));
        }

        #[test]
        fn arbitrary_strings_never_panic(raw in ".{0,40}") {
            let _ = ShareToken::parse_at(&raw, 0);
        }
    }
}
