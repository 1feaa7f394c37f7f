class ManageIQ::Providers::__NAME__::Inventory::Parser::InfraManager < ManageIQ::Providers::__NAME__::Inventory::Parser
  def parse
    clusters
    hosts
    storages
    vms
  end

  private

  def clusters
    collector.clusters.each do |c|
      persister.clusters.build(:ems_ref => c["ems_ref"], :uid_ems => c["uid_ems"], :name => c["name"])
    end
  end

  def hosts
    collector.hosts.each do |h|
      persister.hosts.build(
        :type             => "ManageIQ::Providers::__NAME__::InfraManager::Host",
        :ems_ref          => h["ems_ref"],
        :uid_ems          => h["uid_ems"],
        :name             => h["name"],
        :hostname         => h["hostname"],
        :ipaddress        => h["ipaddress"],
        :vmm_vendor       => h["vmm_vendor"],
        :vmm_product      => h["vmm_product"],
        :vmm_version      => h["vmm_version"],
        :vmm_buildnumber  => h["vmm_buildnumber"],
        :power_state      => h["power_state"],
        :connection_state => h["connection_state"],
        :ems_cluster      => persister.clusters.lazy_find(h["cluster"])
      )
    end
  end

  def storages
    collector.storages.each do |s|
      persister.storages.build(
        :ems_ref => s["ems_ref"], :name => s["name"], :store_type => s["store_type"], :total_space => s["total_space"],
        :free_space => s["free_space"], :multiplehostaccess => s["multiplehostaccess"], :location => s["location"]
      )
    end
  end

  def vms
    collector.vms.each do |v|
      template = v["template"] == true
      vm = persister.vms_and_templates.build(
        :type            => "ManageIQ::Providers::__NAME__::InfraManager::#{template ? "Template" : "Vm"}",
        :ems_ref         => v["ems_ref"],
        :uid_ems         => v["uid_ems"],
        :name            => v["name"],
        :location        => v["location"],
        :vendor          => v["vendor"],
        :template        => template,
        :raw_power_state => template ? "never" : v["power"],
        :description     => v["description"],
        :host            => persister.hosts.lazy_find(v["host"]),
        :ems_cluster     => persister.clusters.lazy_find(v["cluster"]),
        :storages        => (v["storages"] || []).map { |s| persister.storages.lazy_find(s) }
      )
      hardware(vm, v)
      persister.operating_systems.build(:vm_or_template => vm, :product_name => v.dig("operating_system", "product_name"))
      snapshots(vm, v)
    end
  end

  def hardware(vm, v)
    hw = v["hardware"] || {}
    hardware = persister.hardwares.build(
      :vm_or_template       => vm,
      :cpu_total_cores      => hw["cpu_total_cores"],
      :cpu_sockets          => hw["cpu_sockets"],
      :cpu_cores_per_socket => hw["cpu_cores_per_socket"],
      :memory_mb            => hw["memory_mb"],
      :disk_capacity        => hw["disk_capacity"]
    )
    (v["disks"] || []).each do |d|
      persister.disks.build(
        :hardware => hardware, :device_name => d["device_name"], :device_type => d["device_type"],
        :controller_type => d["controller_type"], :size => d["size"], :location => d["location"],
        :filename => d["filename"], :storage => persister.storages.lazy_find(d["storage"])
      )
    end
    (v["nics"] || []).each do |n|
      persister.guest_devices.build(
        :hardware => hardware, :uid_ems => n["uid_ems"], :device_name => n["device_name"],
        :device_type => "ethernet", :controller_type => "ethernet", :address => n["address"]
      )
    end
    (v["networks"] || []).each do |n|
      persister.networks.build(
        :hardware => hardware, :description => n["description"], :ipaddress => n["ipaddress"],
        :ipv6address => n["ipv6address"], :hostname => n["hostname"]
      )
    end
  end

  def snapshots(vm, v)
    (v["snapshots"] || []).each do |s|
      parent = s["parent_uid"] && persister.snapshots.lazy_find(:vm_or_template => vm, :uid => s["parent_uid"])
      persister.snapshots.build(
        :vm_or_template => vm, :uid => s["uid"], :uid_ems => s["uid_ems"], :ems_ref => s["ems_ref"],
        :name => s["name"], :description => s["description"],
        :create_time => s["create_time"] && Time.parse(s["create_time"]).utc,
        :parent_uid => s["parent_uid"], :parent => parent
      )
    end
  end
end
