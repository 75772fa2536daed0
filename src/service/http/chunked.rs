//! Decoding of `Transfer-Encoding: chunked` request bodies (RFC 9112 section 7.1), a step at a time,
//! so that bytes may arrive in any split. Chunk-size lines are parsed by `httparse`.

/// Longest chunk-size line (with extensions) or trailer line accepted.
pub(super) const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    Done,
}

/// One step of decoding over the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// This many bytes were framing and are consumed.
    Framing(usize),
    /// The first this many bytes of the input are body data (consume them).
    Data(usize),
    /// This many bytes were consumed and the body (with its trailers) is complete.
    Done(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkedError(pub &'static str);

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkedError {}

#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// The chunk-size or trailer line read so far.
    line: Vec<u8>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            line: Vec::new(),
        }
    }

    /// Heap bytes held for a partial chunk-size or trailer line (at most about [`MAX_LINE`]).
    #[cfg(test)]
    pub(super) fn line_capacity(&self) -> usize {
        self.line.capacity()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the front of `input`, which must not be empty unless decoding is done.
    pub(crate) fn step(&mut self, input: &[u8]) -> Result<Step, ChunkedError> {
        match self.state {
            State::Done => Ok(Step::Done(0)),
            State::Size | State::Trailer => {
                let (take, complete) = match input.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (input.len(), false),
                };
                if self.line.len() + take > MAX_LINE {
                    return Err(ChunkedError("line too long"));
                }
                self.line.extend_from_slice(&input[..take]);
                if !complete {
                    return Ok(Step::Framing(take));
                }
                if self.state == State::Trailer {
                    let end = self.line == b"\r\n" || self.line == b"\n";
                    self.line.clear();
                    if end {
                        self.state = State::Done;
                        return Ok(Step::Done(take));
                    }
                    return Ok(Step::Framing(take));
                }
                match httparse::parse_chunk_size(&self.line) {
                    Ok(httparse::Status::Complete((n, size))) if n == self.line.len() => {
                        self.line.clear();
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::Data(size)
                        };
                        Ok(Step::Framing(take))
                    }
                    _ => Err(ChunkedError("invalid chunk size")),
                }
            }
            State::Data(rest) => {
                let n = rest.min(input.len() as u64);
                self.state = if n == rest {
                    State::DataCr
                } else {
                    State::Data(rest - n)
                };
                Ok(Step::Data(n as usize))
            }
            State::DataCr | State::DataLf => {
                let want = if self.state == State::DataCr {
                    b'\r'
                } else {
                    b'\n'
                };
                match input.first() {
                    Some(&b) if b == want => {
                        self.state = if want == b'\r' {
                            State::DataLf
                        } else {
                            State::Size
                        };
                        Ok(Step::Framing(1))
                    }
                    Some(_) => Err(ChunkedError("missing CRLF after chunk data")),
                    None => Ok(Step::Framing(0)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; returns the body and the bytes consumed.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut used = 0;
        while used < input.len() {
            let end = (used + piece).min(input.len());
            let chunk = &input[used..end];
            match d.step(chunk)? {
                Step::Framing(n) => used += n,
                Step::Data(n) => {
                    body.extend_from_slice(&chunk[..n]);
                    used += n;
                }
                Step::Done(n) => return Ok((body, used + n)),
            }
        }
        Err(ChunkedError("incomplete"))
    }

    const BODY: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";

    #[test]
    fn test_decodes_chunks_extensions_and_trailers() {
        let (body, used) = decode(BODY, 1000).unwrap();
        assert_eq!(body, b"hello, world");
        assert_eq!(&BODY[used..], b"NEXT", "stops right after the body");
    }

    #[test]
    fn test_byte_by_byte_gives_same_result() {
        assert_eq!(decode(BODY, 1).unwrap(), decode(BODY, 1000).unwrap());
    }

    #[test]
    fn test_rejects_bad_framing() {
        assert!(decode(b"zz\r\nhello\r\n0\r\n\r\n", 100).is_err());
        assert!(decode(b"5\r\nhelloXX0\r\n\r\n", 100).is_err());
        let long = [b'1'; MAX_LINE + 1];
        assert!(decode(&long, 100).is_err());
    }
}
