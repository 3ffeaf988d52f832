//! The `faultline` command: run a broker, manage topics, produce and consume from the
//! console, and benchmark. Kafka users will recognise the flags of Kafka's own tools.

#[cfg(not(madsim))]
mod cli;

#[cfg(not(madsim))]
#[tokio::main]
async fn main() {
    std::process::exit(cli::run().await);
}

#[cfg(madsim)]
fn main() {
    eprintln!(
        "the faultline command is built for real tokio; the simulated build is used by the lab"
    );
    std::process::exit(2);
}
