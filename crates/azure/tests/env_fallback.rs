//! `AZURE_TENANT_ID` / `AZURE_CLIENT_ID` / `AZURE_CLIENT_SECRET` / `AZURE_SUBSCRIPTION_ID` fill
//! what the settings leave out; settings win. (Its own test binary: the environment is
//! process-wide.)

mod common;

use common::{StandIn, SECRET};
use polyvisor_core::{Driver, Settings};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_environment_variables_fill_missing_settings() {
    let s = StandIn::start();
    std::env::set_var("AZURE_TENANT_ID", "tenant-1");
    std::env::set_var("AZURE_CLIENT_ID", "client-1");
    std::env::set_var("AZURE_CLIENT_SECRET", SECRET);
    std::env::set_var("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-0000000000aa");
    let only = Settings::from_json(&json!({
        "resource_group": "rg-test", "location": "westeurope",
        "authority_host": s.url, "resource_manager_endpoint": s.url, "ca_file": s.ca,
    }))
    .unwrap();
    let d = polyvisor_azure::open_driver(&only).unwrap();
    assert!(d.probe().await.unwrap().contains("rg-test"));
    // a setting wins over the environment
    let wrong = only.clone().merged_with(&Settings::from_pairs([("client_secret", "not-the-secret")]));
    let e = polyvisor_azure::open_driver(&wrong).unwrap().probe().await.unwrap_err();
    assert_eq!(e.kind(), polyvisor_core::ErrorKind::Unauthorized);
    std::env::remove_var("AZURE_CLIENT_SECRET");
    let e = polyvisor_azure::open_driver(&only).err().expect("no secret anywhere");
    assert!(e.message().contains("'client_secret'") && e.message().contains("AZURE_CLIENT_SECRET"), "{e}");
}
