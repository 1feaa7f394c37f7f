describe ManageIQ::Providers::__NAME__::InfraManager::Refresher do
  let(:ems) { new_ems("sim") }

  def refresh(target = ems)
    described_class.refresh([target])
  end

  it "full refresh twice yields the same inventory (no duplicates)" do
    stub_cli(["inventory"], fixture("sim_inventory.json"))
    2.times { refresh }
    doc = JSON.parse(fixture("sim_inventory.json"))
    expect(ems.vms_and_templates.size).to eq(doc["vms"].size)
    expect(ems.miq_templates.map(&:ems_ref)).to match_array(doc["vms"].select { |v| v["template"] }.map { |v| v["ems_ref"] })
    expect(ems.hosts.size).to eq(doc["hosts"].size)
    expect(ems.ems_clusters.size).to eq(1)
    vm = ems.vms.find { |v| v.ems_ref == "101" }
    expect(vm).to have_attributes(:name => doc["vms"].find { |v| v["ems_ref"] == "101" }["name"], :power_state => "on",
                                  :vendor => "unknown", :template => false)
    expect(vm.hardware.memory_mb).to be > 0
    template = ems.miq_templates.find { |t| t.ems_ref == "9000" }
    expect(template.power_state).to eq("never")
    expect(template.snapshots.map(&:name)).to include("RAS_TEMPLATE_VERSION_1")
    # The credentials went on stdin, never in argv.
    command, params, stdin = AwesomeSpawn.calls.first
    expect(command).to eq("polyvisor")
    expect(params.join(" ")).not_to include("PASSWORD")
    expect(JSON.parse(stdin)["auth"]["password"]).to eq("PASSWORD")
  end

  it "a VM missing from the next full refresh is archived, not deleted" do
    stub_cli(["inventory"], fixture("sim_inventory.json"))
    refresh
    doc = JSON.parse(fixture("sim_inventory.json"))
    doc["vms"].reject! { |v| v["ems_ref"] == "102" }
    stub_cli(["inventory"], JSON.generate(doc))
    refresh
    expect(ems.vms.map(&:ems_ref)).not_to include("102")
    expect(ems.records(:vms_and_templates, true).map(&:ems_ref)).to include("102")
  end

  it "targeted refresh updates the VM and leaves unrelated inventory untouched" do
    stub_cli(["inventory"], fixture("sim_inventory.json"))
    refresh
    before = ems.vms.reject { |v| v.ems_ref == "101" }.map(&:attributes)
    stub_cli(["inventory", "--vm", "101"], fixture("sim_inventory_vm_101_stopped.json"))
    target = InventoryRefresh::TargetCollection.new(:manager => ems)
    target.add_target(:association => :vms_and_templates, :manager_ref => {:ems_ref => "101"})
    refresh(target)
    expect(ems.vms.find { |v| v.ems_ref == "101" }.power_state).to eq("off")
    expect(ems.vms.reject { |v| v.ems_ref == "101" }.map(&:attributes)).to eq(before)
    expect(ems.hosts.size).to eq(1)
  end

  it "refreshes a Proxmox (fakepve) inventory with its vendor" do
    ems = new_ems("proxmox")
    stub_cli(["inventory"], fixture("pve_inventory.json"))
    2.times { described_class.refresh([ems]) }
    vm = ems.vms.find { |v| v.ems_ref == "100" }
    expect(vm).to have_attributes(:vendor => "proxmox", :location => "pve1/100", :power_state => "on")
    expect(ems.miq_templates.map(&:ems_ref)).to include("9000")
  end

  it "the persister JSON of the CLI round-trips through from_json and persists the same inventory" do
    json = fixture("sim_inventory_persister.json")
    persister = ManageIQ::Providers::Inventory::Persister.from_json(json, ems)
    expect(persister).to be_a(ManageIQ::Providers::__NAME__::Inventory::Persister::InfraManager)
    persister.persist!
    doc = JSON.parse(fixture("sim_inventory.json"))
    expect(ems.vms_and_templates.map(&:ems_ref)).to match_array(doc["vms"].map { |v| v["ems_ref"] })
    again = ManageIQ::Providers::Inventory::Persister.from_json(persister.to_json, ems)
    again.persist!
    expect(ems.vms_and_templates.size).to eq(doc["vms"].size)
    expect(ems.vms.find { |v| v.ems_ref == "101" }[:host]).to eq(doc["vms"].find { |v| v["ems_ref"] == "101" }["host"])
  end
end
