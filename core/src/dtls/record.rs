//! The DTLS record layer: epochs, record sequence numbers, AES-128-GCM protection in
//! epoch 1 and the anti-replay window (RFC 6347 4.1).
//!
//! Epoch 1 is readable only once the handshake state machine accepted the peer's
//! ChangeCipherSpec ([`RecordLayer::enable_read`]) and writable once we sent ours
//! ([`RecordLayer::enable_write`]).

use crate::dtls::keying::RecordKeys;
use crate::dtls::wire::{ContentType, RecordHeader, RECORD_HEADER_LEN};

/// 64-record anti-replay window (RFC 6347 4.1.2.6).
#[derive(Debug, Default)]
pub(crate) struct ReplayWindow {
    max: Option<u64>,
    bits: u64,
}

impl ReplayWindow {
    /// Whether `seq` is new.
    pub(crate) fn check(&self, seq: u64) -> bool {
        match self.max {
            None => true,
            Some(max) if seq > max => true,
            Some(max) => {
                let back = max - seq;
                back < 64 && self.bits & (1u64 << back) == 0
            }
        }
    }

    /// Remember `seq` as seen.
    pub(crate) fn mark(&mut self, seq: u64) {
        match self.max {
            None => {
                self.max = Some(seq);
                self.bits = 1;
            }
            Some(max) if seq > max => {
                let shift = seq - max;
                self.bits = if shift >= 64 {
                    1
                } else {
                    (self.bits << shift) | 1
                };
                self.max = Some(seq);
            }
            Some(max) => {
                let back = max - seq;
                if back < 64 {
                    self.bits |= 1u64 << back;
                }
            }
        }
    }
}

/// Why an incoming record was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// An epoch we cannot read (yet).
    UnreadableEpoch,
    /// Seen before.
    Replayed,
    /// Authentication failed.
    BadRecord,
}

/// Epoch state of both directions.
#[derive(Debug, Default)]
pub(crate) struct RecordLayer {
    keys: Option<RecordKeys>,
    read_epoch: u16,
    write_epoch: u16,
    next_sequence: [u64; 2],
    replay: ReplayWindow,
}

impl RecordLayer {
    /// Hold the epoch-1 keys (neither direction switches yet).
    pub(crate) fn install(&mut self, keys: RecordKeys) {
        self.keys = Some(keys);
    }

    /// Read epoch 1 from now on (the peer's ChangeCipherSpec was accepted).
    pub(crate) fn enable_read(&mut self) {
        if self.keys.is_some() {
            self.read_epoch = 1;
        }
    }

    /// Write epoch 1 from now on (we sent our ChangeCipherSpec).
    pub(crate) fn enable_write(&mut self) {
        if self.keys.is_some() {
            self.write_epoch = 1;
        }
    }

    /// The epoch we read.
    pub(crate) fn read_epoch(&self) -> u16 {
        self.read_epoch
    }

    /// The epoch we write.
    pub(crate) fn write_epoch(&self) -> u16 {
        self.write_epoch
    }

    /// Drop the keys (failure).
    pub(crate) fn forget(&mut self) {
        self.keys = None;
    }

    /// Build one record of `epoch` (protected in epoch 1); `None` without keys for it.
    pub(crate) fn seal(
        &mut self,
        content_type: ContentType,
        epoch: u16,
        version: u16,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let index = usize::from(epoch.min(1));
        let sequence = *self.next_sequence.get(index)?;
        let fragment = if epoch == 0 {
            payload.to_vec()
        } else {
            self.keys.as_ref()?.write.seal(
                epoch,
                sequence,
                content_type.to_u8(),
                version,
                payload,
            )?
        };
        if let Some(n) = self.next_sequence.get_mut(index) {
            *n += 1;
        }
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + fragment.len());
        RecordHeader {
            content_type,
            version,
            epoch,
            sequence,
            length: fragment.len() as u16,
        }
        .write(&mut out);
        out.extend_from_slice(&fragment);
        Some(out)
    }

    /// The plaintext of an incoming record: epoch 0 as is, epoch 1 authenticated and
    /// checked against the replay window.
    pub(crate) fn open(
        &mut self,
        header: &RecordHeader,
        fragment: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        match header.epoch {
            0 => Ok(fragment.to_vec()),
            1 if self.read_epoch == 1 => {
                if !self.replay.check(header.sequence) {
                    return Err(OpenError::Replayed);
                }
                let keys = self.keys.as_ref().ok_or(OpenError::UnreadableEpoch)?;
                let plaintext = keys
                    .read
                    .open(
                        1,
                        header.sequence,
                        header.content_type.to_u8(),
                        header.version,
                        fragment,
                    )
                    .ok_or(OpenError::BadRecord)?;
                self.replay.mark(header.sequence);
                Ok(plaintext)
            }
            _ => Err(OpenError::UnreadableEpoch),
        }
    }
}
