class ManageIQ::Providers::__NAME__::InfraManager < ManageIQ::Providers::InfraManager
  supports :create
  supports :refresh_ems
  supports :provisioning
  supports :catalog

  def self.ems_type
    @ems_type ||= "__SNAKE__".freeze
  end

  def self.description
    @description ||= "__NAME__".freeze
  end

  def allow_targeted_refresh?
    true
  end

  # Data-Driven-Forms schema of the "Add provider" form.
  def self.params_for_create
    {
      :fields => [
        {
          :component => "select",
          :id        => "options.platform",
          :name      => "options.platform",
          :label     => _("Platform (polyvisor driver)"),
          :isRequired => true,
          :options   => %w[sim proxmox libvirt openstack kubevirt xcpng hpevme azure].map { |p| {:label => p, :value => p} }
        },
        {
          :component => "sub-form",
          :id        => "endpoints-subform",
          :name      => "endpoints-subform",
          :title     => _("Endpoint"),
          :fields    => [
            {:component => "text-field", :id => "endpoints.default.hostname", :name => "endpoints.default.hostname", :label => _("Hostname")},
            {:component => "text-field", :id => "endpoints.default.port", :name => "endpoints.default.port", :label => _("Port"), :type => "number"},
            {:component => "checkbox", :id => "endpoints.default.verify_ssl", :name => "endpoints.default.verify_ssl", :label => _("Verify TLS certificate")},
            {:component => "text-field", :id => "endpoints.default.certificate_authority", :name => "endpoints.default.certificate_authority", :label => _("CA file")},
            {:component => "text-field", :id => "authentications.default.userid", :name => "authentications.default.userid", :label => _("Username")},
            {:component => "password-field", :id => "authentications.default.password", :name => "authentications.default.password", :label => _("Password or token secret")},
            {:component => "textarea", :id => "options.settings", :name => "options.settings", :label => _("Driver settings (JSON object, e.g. {\"token_name\":\"ci\",\"node\":\"pve1\"})")}
          ]
        }
      ]
    }
  end

  # "Validate" before the record exists.
  def self.verify_credentials(args)
    default   = args.dig("endpoints", "default") || {}
    auth      = args.dig("authentications", "default") || {}
    password  = ManageIQ::Password.try_decrypt(auth["password"])
    options   = args["options"] || {}
    conn = raw_connect(options["platform"], default["hostname"], default["port"], auth["userid"], password,
                       :verify_ssl => default["verify_ssl"], :ca => default["certificate_authority"],
                       :settings => options["settings"])
    conn.verify["ok"] == true
  end

  def self.connection_document(platform, hostname, port, userid, password, options = {})
    settings = options[:settings]
    settings = JSON.parse(settings) if settings.kind_of?(String) && !settings.strip.empty?
    settings = {} unless settings.kind_of?(Hash)
    auth = {"userid" => userid, "password" => password}.compact
    extra = settings.select { |key, _| key.to_s.include?("secret") || key.to_s.include?("token") }
    {
      "platform" => platform.to_s,
      "endpoint" => {"hostname" => hostname, "port" => port && port.to_i, "verify_ssl" => options[:verify_ssl], "ca" => options[:ca]}.compact,
      "auth"     => auth.merge(extra),
      "options"  => settings.reject { |key, _| extra.key?(key) }
    }
  end

  def self.raw_connect(platform, hostname, port, userid, password, options = {})
    ManageIQ::Providers::__NAME__::Cli.new(connection_document(platform, hostname, port, userid, password, options),
                                           options[:cli_path])
  end

  def connect(_options = {})
    self.class.raw_connect(platform, hostname, port, authentication_userid, authentication_password,
                           :verify_ssl => verify_ssl, :ca => certificate_authority, :settings => (options || {})["settings"])
  end

  def verify_credentials(_auth_type = nil, _options = {})
    connect.verify["ok"] == true
  end

  def platform
    (options || {})["platform"]
  end

  # The event stream's position, kept on the EMS (its `options` hash) so a restarted
  # catcher resumes where the last one stopped.
  def last_event_cursor
    (options || {})["event_cursor"]
  end

  def update_last_event_cursor(cursor)
    update!(:options => (options || {}).merge("event_cursor" => cursor))
  end

  def self.catalog_types
    {"__SNAKE__" => N_("__NAME__")}
  end
end
