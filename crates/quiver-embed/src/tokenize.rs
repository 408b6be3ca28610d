//! Tokenization: a Hugging Face `tokenizer.json` with truncation and padding taken over by us.
//!
//! `tokenizer.json` files often carry their own truncation and padding (all-MiniLM-L6-v2's pads
//! and truncates at 128). Both are switched off here: truncation is set from the model's
//! `max_seq_length` (256 for all-MiniLM-L6-v2, as sentence-transformers does), and padding is done
//! per batch by the encoder, so pad tokens never reach pooling.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::read_file;
use crate::error::{EmbedError, Result};

/// One tokenized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids, including special tokens when the model adds them.
    pub ids: Vec<u32>,
    /// Token type (segment) ids, same length as `ids`.
    pub type_ids: Vec<u32>,
    /// `true` for special tokens (`[CLS]`, `[SEP]`), same length as `ids`.
    pub special: Vec<bool>,
}

impl TokenizedText {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A tokenizer configured for one model.
pub struct TextTokenizer {
    inner: Tokenizer,
    add_special_tokens: bool,
    unk_id: Option<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("add_special_tokens", &self.add_special_tokens)
            .field("unk_id", &self.unk_id)
            .finish()
    }
}

impl TextTokenizer {
    /// Load `tokenizer.json`, truncating to `max_len` tokens (special tokens included) when given.
    pub fn from_file(
        path: &Path,
        max_len: Option<usize>,
        add_special_tokens: bool,
    ) -> Result<Self> {
        let bytes = read_file(path)?;
        let mut inner = Tokenizer::from_bytes(&bytes).map_err(|e| EmbedError::Config {
            path: path.to_path_buf(),
            message: format!("cannot parse tokenizer: {e}"),
        })?;
        inner.with_padding(None);
        let trunc = max_len.map(|max_length| TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        });
        inner
            .with_truncation(trunc)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let unk_id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.pointer("/model/unk_token")
                    .and_then(|t| t.as_str().map(str::to_owned))
            })
            .and_then(|t| inner.token_to_id(&t));
        Ok(TextTokenizer {
            inner,
            add_special_tokens,
            unk_id,
        })
    }

    /// Id of the unknown token, if the vocabulary has one.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenize a batch (in parallel on the current rayon pool).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        let encs = self
            .inner
            .encode_batch_fast(texts.to_vec(), self.add_special_tokens)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(encs
            .into_iter()
            .map(|e| TokenizedText {
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
                special: e
                    .get_special_tokens_mask()
                    .iter()
                    .map(|m| *m != 0)
                    .collect(),
            })
            .collect())
    }
}
