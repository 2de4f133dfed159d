//! The local socket's wire format, shared by the daemon and the `berth` client.
//!
//! Frames are a tag byte, a big-endian u32 length and the payload. The client sends its
//! argv first (a JSON array of strings), then stdin; the daemon streams stdout and stderr
//! and ends with the exit code.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Client → daemon: the command line, JSON array of strings. Always the first frame.
pub const ARGS: u8 = b'A';
/// Client → daemon: stdin bytes.
pub const STDIN: u8 = b'I';
/// Client → daemon: end of stdin.
pub const STDIN_EOF: u8 = b'E';
/// Daemon → client: stdout bytes.
pub const STDOUT: u8 = b'O';
/// Daemon → client: stderr bytes.
pub const STDERR: u8 = b'R';
/// Daemon → client: exit code, i32 big-endian. The last frame.
pub const EXIT: u8 = b'X';

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Writes one frame; a stream payload (stdin, stdout, stderr) larger than `MAX_FRAME` goes
/// as several frames, so no output is ever too large for the other side.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    if payload.len() > MAX_FRAME {
        if !matches!(tag, STDIN | STDOUT | STDERR) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"));
        }
        for piece in payload.chunks(MAX_FRAME) {
            Box::pin(write_frame(w, tag, piece)).await?;
        }
        return Ok(());
    }
    let mut header = [0u8; 5];
    header[0] = tag;
    header[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&header).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// The next frame, or None at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "frame too large"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((header[0], payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(64);
        write_frame(&mut a, ARGS, b"[\"apps:list\"]").await.unwrap();
        write_frame(&mut a, EXIT, &7i32.to_be_bytes()).await.unwrap();
        drop(a);
        assert_eq!(read_frame(&mut b).await.unwrap(), Some((ARGS, b"[\"apps:list\"]".to_vec())));
        assert_eq!(read_frame(&mut b).await.unwrap(), Some((EXIT, 7i32.to_be_bytes().to_vec())));
        assert_eq!(read_frame(&mut b).await.unwrap(), None);
    }

    #[tokio::test]
    async fn output_larger_than_a_frame_goes_in_several() {
        let big = vec![b'x'; MAX_FRAME * 2 + 10];
        let (mut a, mut b) = tokio::io::duplex(1024 * 1024);
        let writer = tokio::spawn(async move { write_frame(&mut a, STDOUT, &big).await.unwrap() });
        let mut total = 0;
        while total < MAX_FRAME * 2 + 10 {
            let (tag, payload) = read_frame(&mut b).await.unwrap().unwrap();
            assert_eq!(tag, STDOUT);
            assert!(payload.len() <= MAX_FRAME);
            total += payload.len();
        }
        writer.await.unwrap();
    }
}
