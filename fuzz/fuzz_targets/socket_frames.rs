//! The local socket's frame reader, on whatever bytes arrive.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut reader = data;
        while let Ok(Some((_, payload))) = berth::server::protocol::read_frame(&mut reader).await {
            assert!(payload.len() <= berth::server::protocol::MAX_FRAME);
        }
    });
});
