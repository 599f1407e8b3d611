//! The range protocol's wire format: one request and one response per substream.
//!
//! Request: 16 bytes, `from` then `to`, each a big-endian `u64`; nothing else is read
//! (a longer request is an error, so the request size bound is 16 bytes).
//! Response: one tag byte, then the payload up to the end of the substream:
//! tag 0 = the node's bytes (at most `max_block_bytes`), tag 1 = an error text (at most
//! [`MAX_ERROR_BYTES`] bytes of UTF-8, e.g. "unavailable").

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Size of an encoded request: two big-endian `u64`.
pub const REQUEST_BYTES: usize = 16;
/// Largest error text a response may carry.
pub const MAX_ERROR_BYTES: usize = 256;

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
        let limit = self.max_response_bytes.max(MAX_ERROR_BYTES) + 1;
        let mut buf = Vec::new();
        io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
        let Some((&tag, payload)) = buf.split_first() else {
            return Err(invalid("empty range response".into()));
        };
        match tag {
            0 if payload.len() <= self.max_response_bytes => Ok(RangeResp::Data(payload.to_vec())),
            0 => Err(invalid(format!(
                "range response over max_block_bytes ({} bytes)",
                self.max_response_bytes
            ))),
            1 if payload.len() <= MAX_ERROR_BYTES => {
                Ok(RangeResp::Error(String::from_utf8_lossy(payload).into_owned()))
            }
            1 => Err(invalid("range error text over 256 bytes".into())),
            t => Err(invalid(format!("unknown range response tag {t}"))),
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
                io.write_all(&[0]).await?;
                io.write_all(&data).await?;
            }
            RangeResp::Error(text) => {
                let bytes = text.as_bytes();
                io.write_all(&[1]).await?;
                io.write_all(&bytes[..bytes.len().min(MAX_ERROR_BYTES)]).await?;
            }
        }
        io.close().await
    }
}
