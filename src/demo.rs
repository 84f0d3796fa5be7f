pub async fn run(_seed: &str, _r: u64) -> anyhow::Result<()> {
    Ok(())
}
