//! MLLP framing: `0x0B payload 0x1C 0x0D`, decoded incrementally.
//!
//! Shaped like mini-redis's `Connection`: the I/O loop reads into a
//! `BytesMut` and calls [`MllpDecoder::decode`] until it returns `None`; the
//! decoder consumes what it returns. It never blocks and holds no I/O.
//!
//! - Frames may arrive split across reads, or several in one read.
//! - CR, LF, space and tab between frames are skipped silently; any other
//!   byte outside a frame comes back as [`Frame::Garbage`] (up to the next
//!   start block, or all that is buffered).
//! - A `0x1C` not followed by `0x0D` is payload; a `0x1C` at the end of the
//!   buffer waits for the next byte.
//! - A `0x0B` inside a frame means the sender restarted: what came before it
//!   is returned as [`Frame::Garbage`] and a new frame begins.
//! - A payload longer than `max_len` yields [`Frame::TooLarge`] once; the rest
//!   of that frame is discarded as it arrives (never buffered), so memory
//!   stays bounded by `max_len` plus one read, whatever the frame's size.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use memchr::{memchr, memchr2};

/// Start block (VT).
pub const START_BLOCK: u8 = 0x0B;
/// End block (FS), followed by [`CARRIAGE_RETURN`].
pub const END_BLOCK: u8 = 0x1C;
/// Ends the frame after [`END_BLOCK`].
pub const CARRIAGE_RETURN: u8 = 0x0D;
/// How much of an oversized frame is kept for the record.
pub const TOO_LARGE_PREFIX: usize = 4096;

/// What the decoder found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete payload, without the framing bytes.
    Message(Bytes),
    /// Bytes outside any frame, or an unterminated frame's payload (after a
    /// new start block, or at [`MllpDecoder::finish`]).
    Garbage(Bytes),
    /// A frame whose payload exceeded the limit; the rest of it is dropped.
    TooLarge {
        /// The first bytes of the payload (at most [`TOO_LARGE_PREFIX`]).
        prefix: Bytes,
        /// Payload bytes received when the limit was crossed (the frame is
        /// at least this long).
        len: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// After a start block; `scanned` payload bytes hold no end block.
    InFrame { scanned: usize },
    /// Dropping the rest of an oversized frame.
    Discarding,
}

/// Incremental MLLP decoder with a payload size limit.
#[derive(Debug, Clone)]
pub struct MllpDecoder {
    max_len: usize,
    state: State,
}

impl MllpDecoder {
    /// A decoder refusing payloads longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        MllpDecoder {
            max_len,
            state: State::Idle,
        }
    }

    /// The next frame in `buf`, consuming its bytes; `None` when more bytes
    /// are needed. Call repeatedly until it returns `None`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            match self.state {
                State::Idle => {
                    let skip = buf
                        .iter()
                        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
                        .unwrap_or(buf.len());
                    buf.advance(skip);
                    match buf.first() {
                        None => return None,
                        Some(&START_BLOCK) => {
                            buf.advance(1);
                            self.state = State::InFrame { scanned: 0 };
                        }
                        Some(_) => {
                            let end = memchr(START_BLOCK, buf).unwrap_or(buf.len());
                            return Some(Frame::Garbage(buf.split_to(end).freeze()));
                        }
                    }
                }
                State::InFrame { scanned } => return self.in_frame(buf, scanned),
                State::Discarding => {
                    match memchr2(END_BLOCK, START_BLOCK, buf) {
                        Some(i) if buf.get(i) == Some(&START_BLOCK) => {
                            buf.advance(i);
                            self.state = State::Idle;
                        }
                        Some(i) => match buf.get(i + 1) {
                            Some(&CARRIAGE_RETURN) => {
                                buf.advance(i + 2);
                                self.state = State::Idle;
                            }
                            Some(_) => buf.advance(i + 1),
                            None => {
                                buf.advance(i); // keep the end block: its CR may follow
                                return None;
                            }
                        },
                        None => {
                            buf.clear();
                            return None;
                        }
                    }
                }
            }
        }
    }

    fn in_frame(&mut self, buf: &mut BytesMut, mut scanned: usize) -> Option<Frame> {
        loop {
            let rest = buf.get(scanned..).unwrap_or_default();
            match memchr2(END_BLOCK, START_BLOCK, rest).map(|i| i + scanned) {
                Some(i) if buf.get(i) == Some(&START_BLOCK) => {
                    // The sender restarted: the partial frame is garbage.
                    self.state = State::Idle;
                    return Some(Frame::Garbage(buf.split_to(i).freeze()));
                }
                Some(i) => match buf.get(i + 1) {
                    Some(&CARRIAGE_RETURN) => {
                        self.state = State::Idle;
                        if i > self.max_len {
                            let frame = too_large(buf, i);
                            buf.advance(i + 2);
                            return Some(frame);
                        }
                        let payload = buf.split_to(i).freeze();
                        buf.advance(2);
                        return Some(Frame::Message(payload));
                    }
                    Some(_) => scanned = i + 1,
                    None => return self.wait(buf, i),
                },
                None => return self.wait(buf, buf.len()),
            }
        }
    }

    /// No end of frame yet: `scanned` bytes are payload.
    fn wait(&mut self, buf: &mut BytesMut, scanned: usize) -> Option<Frame> {
        if scanned > self.max_len {
            let frame = too_large(buf, scanned);
            buf.advance(scanned); // a trailing end block stays for Discarding
            self.state = State::Discarding;
            return Some(frame);
        }
        self.state = State::InFrame { scanned };
        None
    }

    /// At end of input: the rest of `buf`. An unterminated frame's payload
    /// comes back as [`Frame::Garbage`] (store it as "frame not terminated");
    /// `None` when nothing is left. The decoder is reset.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if let Some(frame) = self.decode(buf) {
            return Some(frame);
        }
        let state = std::mem::replace(&mut self.state, State::Idle);
        match state {
            State::InFrame { .. } if !buf.is_empty() => Some(Frame::Garbage(buf.split().freeze())),
            _ => {
                buf.clear();
                None
            }
        }
    }
}

fn too_large(buf: &BytesMut, len: usize) -> Frame {
    let keep = len.min(TOO_LARGE_PREFIX).min(buf.len());
    Frame::TooLarge {
        prefix: Bytes::copy_from_slice(buf.get(..keep).unwrap_or_default()),
        len,
    }
}

/// Appends `payload` framed as MLLP to `out`.
pub fn encode(payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + 3);
    out.put_u8(START_BLOCK);
    out.put_slice(payload);
    out.put_u8(END_BLOCK);
    out.put_u8(CARRIAGE_RETURN);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(d: &mut MllpDecoder, buf: &mut BytesMut, out: &mut Vec<Frame>) {
        while let Some(f) = d.decode(buf) {
            out.push(f);
        }
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn garbage(s: &[u8]) -> Frame {
        Frame::Garbage(Bytes::copy_from_slice(s))
    }

    #[test]
    fn frames_garbage_and_whitespace() {
        let mut d = MllpDecoder::new(1024);
        let mut buf = BytesMut::from(&b"\r\n\x0bA\x1cB\x1c\r\n\x0bC\x1c\rjunk\x0b\x1c\r"[..]);
        let mut out = Vec::new();
        drain(&mut d, &mut buf, &mut out);
        assert_eq!(out, [msg("A\u{1c}B"), msg("C"), garbage(b"junk"), msg("")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn end_block_split_across_reads() {
        let mut d = MllpDecoder::new(1024);
        let mut buf = BytesMut::from(&b"\x0bMSH|x\x1c"[..]);
        assert_eq!(d.decode(&mut buf), None);
        buf.extend_from_slice(b"\r");
        assert_eq!(d.decode(&mut buf), Some(msg("MSH|x")));
    }

    #[test]
    fn restart_and_unterminated_at_eof() {
        let mut d = MllpDecoder::new(1024);
        let mut buf = BytesMut::from(&b"\x0bhalf\x0bwhole\x1c\r\x0btail"[..]);
        let mut out = Vec::new();
        drain(&mut d, &mut buf, &mut out);
        assert_eq!(out, [garbage(b"half"), msg("whole")]);
        assert_eq!(d.finish(&mut buf), Some(garbage(b"tail")));
        assert_eq!(d.finish(&mut buf), None);
    }

    #[test]
    fn oversized_frame_is_reported_once_and_not_buffered() {
        let mut d = MllpDecoder::new(100);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"\x0b");
        let chunk = vec![b'x'; 64 * 1024];
        let mut out = Vec::new();
        for _ in 0..1600 {
            // 100 MiB in 64 KiB reads
            buf.extend_from_slice(&chunk);
            drain(&mut d, &mut buf, &mut out);
            assert!(buf.len() <= 1, "buffer grew to {}", buf.len());
        }
        buf.extend_from_slice(b"\x1c");
        drain(&mut d, &mut buf, &mut out);
        buf.extend_from_slice(b"\r\x0bnext\x1c\r");
        drain(&mut d, &mut buf, &mut out);
        assert_eq!(out.len(), 2);
        match &out[0] {
            Frame::TooLarge { prefix, len } => {
                assert_eq!(prefix.len(), TOO_LARGE_PREFIX);
                assert_eq!(*len, 64 * 1024);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(out[1], msg("next"));
    }

    #[test]
    fn oversized_complete_frame_in_one_read() {
        let mut d = MllpDecoder::new(3);
        let mut buf = BytesMut::from(&b"\x0babcd\x1c\r\x0babc\x1c\r"[..]);
        let mut out = Vec::new();
        drain(&mut d, &mut buf, &mut out);
        let big = Frame::TooLarge {
            prefix: Bytes::from_static(b"abcd"),
            len: 4,
        };
        assert_eq!(out, [big, msg("abc")]);
    }

    #[test]
    fn encode_frames() {
        let mut out = BytesMut::new();
        encode(b"MSH", &mut out);
        assert_eq!(&out[..], b"\x0bMSH\x1c\r");
    }

    proptest! {
        #[test]
        fn split_reads_yield_exact_payloads(
            payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no framing bytes", |b| *b != 0x0b && *b != 0x1c), 0..200),
                0..8,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut wire = BytesMut::new();
            for p in &payloads {
                encode(p, &mut wire);
            }
            let wire = wire.freeze();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let mut d = MllpDecoder::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for w in points.windows(2) {
                buf.extend_from_slice(&wire[w[0]..w[1]]);
                drain(&mut d, &mut buf, &mut out);
            }
            if let Some(f) = d.finish(&mut buf) {
                out.push(f);
            }
            let expected: Vec<Frame> = payloads.into_iter().map(|p| Frame::Message(Bytes::from(p))).collect();
            prop_assert_eq!(out, expected);
        }
    }
}
