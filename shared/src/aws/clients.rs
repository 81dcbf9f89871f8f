//! AWS clients, built once per cold start from one `aws_config::SdkConfig`. Endpoints come from
//! the standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables, so the same binary
//! runs against AWS and against the local stack.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The service clients every step uses.
#[derive(Clone, Debug)]
pub struct Clients {
    conf: SdkConfig,
    pub iam: aws_sdk_iam::Client,
    pub amp: aws_sdk_amp::Client,
    pub grafana: aws_sdk_grafana::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sts: aws_sdk_sts::Client,
    pub eks: aws_sdk_eks::Client,
    /// Service Quotas (the IAM trust-policy length quota; IAM's quotas are global like IAM).
    pub service_quotas: aws_sdk_servicequotas::Client,
    /// Plain HTTPS (CloudFormation responses, the Grafana HTTP API, remote write).
    pub http: crate::aws::http::HttpClient,
    /// Where Grafana HTTP API calls go instead of `https://<workspace endpoint>` (with the
    /// endpoint as `Host`): `O11Y_GRAFANA_API_URL`, set only on the local stack.
    pub grafana_api_url: Option<String>,
}

impl Clients {
    /// Loads the standard configuration chain (environment, profile, container/instance role).
    pub async fn from_env() -> Self {
        let conf = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let mut clients = Self::new(&conf);
        clients.grafana_api_url = std::env::var("O11Y_GRAFANA_API_URL").ok().filter(|u| !u.is_empty());
        clients
    }

    /// Builds every client from one configuration.
    pub fn new(conf: &SdkConfig) -> Self {
        // Without TLS roots only plain-HTTP endpoints (the local stack) work; a real HTTPS call
        // then fails with a clear TransientError naming the call.
        let http = crate::aws::http::HttpClient::new().unwrap_or_else(|_| crate::aws::http::HttpClient::plain());
        Self {
            http,
            grafana_api_url: None,
            conf: conf.clone(),
            iam: aws_sdk_iam::Client::new(conf),
            amp: aws_sdk_amp::Client::new(conf),
            grafana: aws_sdk_grafana::Client::new(conf),
            ssm: aws_sdk_ssm::Client::new(conf),
            sts: aws_sdk_sts::Client::new(conf),
            eks: aws_sdk_eks::Client::new(conf),
            service_quotas: aws_sdk_servicequotas::Client::new(conf),
        }
    }

    /// Clients acting in another account: `sts:AssumeRole` into `role_arn` (session `session`,
    /// limited by [`crate::domain::iam::policy::target_session_policy`]), the regional clients
    /// rebuilt with those credentials from the same configuration.
    pub async fn assume(&self, role_arn: &str, session: &str) -> crate::domain::error::Result<Self> {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            // The vending role is an administrator: the session is held to the security boundary.
            .policy(crate::domain::iam::policy::to_compact(&crate::domain::iam::policy::target_session_policy()))
            .send()
            .await
            .map_err(|e| crate::aws::sdk::from_sdk("sts:AssumeRole", e))?;
        let c = out
            .credentials()
            .ok_or_else(|| crate::domain::error::Error::Internal("sts:AssumeRole returned no credentials".into()))?;
        let creds = aws_credential_types::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "o11y-provisioner-target",
        );
        let conf = self
            .conf
            .to_builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
            .build();
        let mut clients = Self::new(&conf);
        clients.http = self.http.clone();
        clients.grafana_api_url = self.grafana_api_url.clone();
        // Keep a Grafana endpoint override (the local stack's emulator) with the new credentials.
        clients.grafana = aws_sdk_grafana::Client::from_conf(
            self.grafana
                .config()
                .to_builder()
                .credentials_provider(conf.credentials_provider().ok_or_else(|| {
                    crate::domain::error::Error::Internal("no credentials provider after AssumeRole".into())
                })?)
                .build(),
        );
        Ok(clients)
    }

    /// Replaces the Grafana client (the local stack points it at the Grafana emulator).
    pub fn with_grafana(mut self, grafana: aws_sdk_grafana::Client) -> Self {
        self.grafana = grafana;
        self
    }

    /// Sends Grafana HTTP API calls to `url` (the local stack's router) instead of the workspace.
    pub fn with_grafana_api_url(mut self, url: impl Into<String>) -> Self {
        self.grafana_api_url = Some(url.into());
        self
    }

    /// The configured region, used when the input names none.
    pub fn region(&self) -> Option<&str> {
        self.conf.region().map(|r| r.as_ref())
    }

    /// The shared configuration.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.conf
    }

    /// Clients for the deployment's region: the same clients when it is the configured region,
    /// regional clients rebuilt from the same configuration otherwise (IAM and STS stay global).
    pub fn for_region(&self, region: &str) -> Self {
        if self.region() == Some(region) {
            return self.clone();
        }
        let r = Region::new(region.to_string());
        Self {
            conf: self.conf.clone(),
            iam: self.iam.clone(),
            sts: self.sts.clone(),
            service_quotas: self.service_quotas.clone(),
            amp: aws_sdk_amp::Client::from_conf(
                aws_sdk_amp::config::Builder::from(&self.conf).region(r.clone()).build(),
            ),
            grafana: aws_sdk_grafana::Client::from_conf(self.grafana.config().to_builder().region(r.clone()).build()),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&self.conf).region(r.clone()).build(),
            ),
            eks: aws_sdk_eks::Client::from_conf(aws_sdk_eks::config::Builder::from(&self.conf).region(r).build()),
            http: self.http.clone(),
            grafana_api_url: self.grafana_api_url.clone(),
        }
    }
}
