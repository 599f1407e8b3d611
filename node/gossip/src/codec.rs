//! The wire formats of the range and snapshot protocols: one request and one response per
//! substream, each delimited by the end of its half of the substream (no length prefix, so
//! nothing a peer claims is ever allocated: every read is bounded by the limit plus one byte).
//!
//! Range request: 16 bytes, `from` then `to`, each a big-endian `u64`; nothing else is read
//! (a longer request is an error, so the request size bound is 16 bytes).
//! Snapshot request: the asker's opaque bytes, at most [`SNAPSHOT_REQUEST_MAX`].
//! Response (both protocols): one tag byte, then the payload up to the end of the substream:
//! tag 0 = the node's bytes (at most `max_block_bytes` / `max_snapshot_bytes`), tag 1 = an error
//! text (at most [`MAX_ERROR_BYTES`] bytes of UTF-8, e.g. "unavailable"), and for snapshots only
//! tag 2 = "busy", without payload.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::SNAPSHOT_REQUEST_MAX;

/// Size of an encoded request: two big-endian `u64`.
pub const REQUEST_BYTES: usize = 16;
/// Largest error text a response may carry.
pub const MAX_ERROR_BYTES: usize = 256;
/// Response tags.
const TAG_DATA: u8 = 0;
const TAG_ERROR: u8 = 1;
const TAG_BUSY: u8 = 2;

/// A height range request `(from, to)`, both inclusive as the node defines them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeReq {
    pub from: u64,
    pub to: u64,
}

/// A range response: the serving node's bytes or its error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeResp {
    Data(Vec<u8>),
    Error(String),
}

/// Length-bounded codec for [`RangeReq`] / [`RangeResp`].
#[derive(Clone, Debug)]
pub struct RangeCodec {
    /// Largest `Data` payload accepted or sent.
    pub max_response_bytes: usize,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads a tagged response to the end of the substream: the tag byte, then at most `max_data`
/// payload bytes for tag 0 and [`MAX_ERROR_BYTES`] for the others (one more byte is read to
/// tell "at the limit" from "over it"; the buffer grows with what arrives, not with a claim).
async fn read_tagged<T>(io: &mut T, max_data: usize, what: &str) -> io::Result<(u8, Vec<u8>)>
where
    T: AsyncRead + Unpin + Send,
{
    let mut tag = [0u8; 1];
    if let Err(e) = io.read_exact(&mut tag).await {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            invalid(format!("empty {what} response"))
        } else {
            e
        });
    }
    let max = if tag[0] == TAG_DATA { max_data } else { MAX_ERROR_BYTES };
    let mut payload = Vec::new();
    io.take((max as u64).saturating_add(1)).read_to_end(&mut payload).await?;
    if payload.len() > max {
        return Err(invalid(format!("{what} response with tag {} is over {max} bytes", tag[0])));
    }
    Ok((tag[0], payload))
}

fn error_text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

async fn write_tagged<T>(io: &mut T, tag: u8, payload: &[u8]) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    io.write_all(&[tag]).await?;
    io.write_all(payload).await?;
    io.close().await
}

impl libp2p::request_response::Codec for RangeCodec {
    type Protocol = StreamProtocol;
    type Request = RangeReq;
    type Response = RangeResp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RangeReq>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::with_capacity(REQUEST_BYTES + 1);
        io.take(REQUEST_BYTES as u64 + 1).read_to_end(&mut buf).await?;
        if buf.len() != REQUEST_BYTES {
            return Err(invalid(format!("range request is {} bytes, expected {REQUEST_BYTES}", buf.len())));
        }
        let mut from = [0u8; 8];
        let mut to = [0u8; 8];
        from.copy_from_slice(&buf[..8]);
        to.copy_from_slice(&buf[8..]);
        Ok(RangeReq { from: u64::from_be_bytes(from), to: u64::from_be_bytes(to) })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RangeResp>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_tagged(io, self.max_response_bytes, "range").await? {
            (TAG_DATA, payload) => Ok(RangeResp::Data(payload)),
            (TAG_ERROR, payload) => Ok(RangeResp::Error(error_text(&payload))),
            (t, _) => Err(invalid(format!("unknown range response tag {t}"))),
        }
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: RangeReq) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut buf = [0u8; REQUEST_BYTES];
        buf[..8].copy_from_slice(&req.from.to_be_bytes());
        buf[8..].copy_from_slice(&req.to.to_be_bytes());
        io.write_all(&buf).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: RangeResp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match res {
            RangeResp::Data(data) => {
                if data.len() > self.max_response_bytes {
                    return Err(invalid(format!(
                        "range response of {} bytes is over max_block_bytes ({})",
                        data.len(),
                        self.max_response_bytes
                    )));
                }
                write_tagged(io, TAG_DATA, &data).await
            }
            RangeResp::Error(text) => write_tagged(io, TAG_ERROR, truncated(&text)).await,
        }
    }
}

/// An error text cut to [`MAX_ERROR_BYTES`] (the reader refuses longer ones).
fn truncated(text: &str) -> &[u8] {
    let bytes = text.as_bytes();
    &bytes[..bytes.len().min(MAX_ERROR_BYTES)]
}

/// A snapshot response: the serving node's bytes, its error text, or "busy".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotResp {
    Data(Vec<u8>),
    Error(String),
    /// The peer serves `max_snapshot_requests_per_peer` of ours already (or cannot queue more).
    Busy,
}

/// Length-bounded codec for snapshot requests (opaque bytes) and [`SnapshotResp`].
#[derive(Clone, Debug)]
pub struct SnapshotCodec {
    /// Largest `Data` payload accepted or sent (`max_snapshot_bytes`).
    pub max_response_bytes: usize,
}

impl libp2p::request_response::Codec for SnapshotCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = SnapshotResp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(SNAPSHOT_REQUEST_MAX as u64 + 1).read_to_end(&mut buf).await?;
        if buf.len() > SNAPSHOT_REQUEST_MAX {
            return Err(invalid(format!("snapshot request over {SNAPSHOT_REQUEST_MAX} bytes")));
        }
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SnapshotResp>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_tagged(io, self.max_response_bytes, "snapshot").await? {
            (TAG_DATA, payload) => Ok(SnapshotResp::Data(payload)),
            (TAG_ERROR, payload) => Ok(SnapshotResp::Error(error_text(&payload))),
            (TAG_BUSY, payload) if payload.is_empty() => Ok(SnapshotResp::Busy),
            (TAG_BUSY, _) => Err(invalid("snapshot busy response with a payload".into())),
            (t, _) => Err(invalid(format!("unknown snapshot response tag {t}"))),
        }
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if req.len() > SNAPSHOT_REQUEST_MAX {
            return Err(invalid(format!(
                "snapshot request of {} bytes is over {SNAPSHOT_REQUEST_MAX}",
                req.len()
            )));
        }
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: SnapshotResp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match res {
            SnapshotResp::Data(data) => {
                if data.len() > self.max_response_bytes {
                    return Err(invalid(format!(
                        "snapshot response of {} bytes is over max_snapshot_bytes ({})",
                        data.len(),
                        self.max_response_bytes
                    )));
                }
                write_tagged(io, TAG_DATA, &data).await
            }
            SnapshotResp::Error(text) => write_tagged(io, TAG_ERROR, truncated(&text)).await,
            SnapshotResp::Busy => write_tagged(io, TAG_BUSY, &[]).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    use super::*;

    const MAX: usize = 1000;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/bastion/t/snapshot/1")
    }

    fn codec() -> SnapshotCodec {
        SnapshotCodec { max_response_bytes: MAX }
    }

    fn read_request(bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        block_on(codec().read_request(&protocol(), &mut Cursor::new(bytes)))
    }

    fn read_response(bytes: Vec<u8>) -> io::Result<SnapshotResp> {
        block_on(codec().read_response(&protocol(), &mut Cursor::new(bytes)))
    }

    fn write_response(res: SnapshotResp) -> io::Result<Vec<u8>> {
        let mut out = Cursor::new(Vec::new());
        block_on(codec().write_response(&protocol(), &mut out, res))?;
        Ok(out.into_inner())
    }

    #[test]
    fn snapshot_requests_are_bounded() {
        assert_eq!(read_request(vec![]).unwrap(), Vec::<u8>::new());
        let max = vec![7; SNAPSHOT_REQUEST_MAX];
        assert_eq!(read_request(max.clone()).unwrap(), max);
        let err = read_request(vec![7; SNAPSHOT_REQUEST_MAX + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut out = Cursor::new(Vec::new());
        let over = vec![7; SNAPSHOT_REQUEST_MAX + 1];
        assert!(block_on(codec().write_request(&protocol(), &mut out, over)).is_err());
        assert!(out.into_inner().is_empty());
    }

    #[test]
    fn snapshot_responses_round_trip_and_are_bounded() {
        for res in [
            SnapshotResp::Data(vec![]),
            SnapshotResp::Data(vec![9; MAX]),
            SnapshotResp::Error("unavailable".into()),
            SnapshotResp::Busy,
        ] {
            let bytes = write_response(res.clone()).unwrap();
            assert_eq!(read_response(bytes).unwrap(), res);
        }
        assert_eq!(write_response(SnapshotResp::Busy).unwrap(), vec![TAG_BUSY]);
        // Over the limit: refused on both sides.
        assert!(write_response(SnapshotResp::Data(vec![9; MAX + 1])).is_err());
        let mut over = vec![TAG_DATA];
        over.resize(MAX + 2, 9);
        assert!(read_response(over).is_err());
        // A long error text is cut by the writer, refused by the reader.
        let long = write_response(SnapshotResp::Error("x".repeat(1000))).unwrap();
        assert_eq!(long.len(), 1 + MAX_ERROR_BYTES);
        let mut long_error = vec![TAG_ERROR];
        long_error.resize(MAX_ERROR_BYTES + 2, b'x');
        assert!(read_response(long_error).is_err());
        // Empty, unknown tag, busy with a payload.
        assert!(read_response(vec![]).is_err());
        assert!(read_response(vec![3, 1]).is_err());
        assert!(read_response(vec![TAG_BUSY, 1]).is_err());
    }

    #[test]
    fn range_responses_keep_their_format() {
        let mut c = RangeCodec { max_response_bytes: MAX };
        let mut out = Cursor::new(Vec::new());
        block_on(c.write_response(&protocol(), &mut out, RangeResp::Data(vec![1, 2]))).unwrap();
        assert_eq!(out.get_ref(), &vec![TAG_DATA, 1, 2]);
        let back = block_on(c.read_response(&protocol(), &mut Cursor::new(out.into_inner()))).unwrap();
        assert_eq!(back, RangeResp::Data(vec![1, 2]));
        // Tag 2 is a snapshot tag only.
        assert!(block_on(c.read_response(&protocol(), &mut Cursor::new(vec![TAG_BUSY]))).is_err());
    }
}
