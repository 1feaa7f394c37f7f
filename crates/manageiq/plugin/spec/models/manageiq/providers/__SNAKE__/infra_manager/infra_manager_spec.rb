describe ManageIQ::Providers::__NAME__::InfraManager do
  it "verifies credentials through `polyvisor manageiq verify`" do
    stub_cli(["verify"], JSON.generate("ok" => true, "description" => "sim"))
    expect(new_ems("sim").verify_credentials).to be(true)
    stub_cli(["verify"], JSON.generate("error" => {"kind" => "auth", "message" => "wrong password"}), 2)
    expect { new_ems("sim").verify_credentials }.to raise_error(MiqException::MiqInvalidCredentialsError)
  end

  it "class-level verify builds the stdin document from the form" do
    stub_cli(["verify"], JSON.generate("ok" => true))
    args = {"endpoints" => {"default" => {"hostname" => "pve.lab", "port" => "8006", "verify_ssl" => true}},
            "authentications" => {"default" => {"userid" => "root@pam", "password" => "s3"}},
            "options" => {"platform" => "proxmox", "settings" => '{"token_name":"ci","node":"pve1"}'}}
    expect(described_class.verify_credentials(args)).to be(true)
    doc = JSON.parse(AwesomeSpawn.calls.last[2])
    expect(doc).to eq("platform" => "proxmox", "endpoint" => {"hostname" => "pve.lab", "port" => 8006, "verify_ssl" => true},
                      "auth" => {"userid" => "root@pam", "password" => "s3", "token_name" => "ci"}, "options" => {"node" => "pve1"})
  end

  it "offers a form with the platform and endpoint fields" do
    ids = described_class.params_for_create[:fields].flat_map { |f| [f[:id], *(f[:fields] || []).map { |x| x[:id] }] }
    expect(ids).to include("options.platform", "endpoints.default.hostname", "authentications.default.password")
  end
end
